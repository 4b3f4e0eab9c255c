"""Response bodies in the OpenAI chat completion shapes, built from a SIFT run's output.

Besides the standard fields, a completion (and a stream's last choice chunk) carries
`sift`, the run as SIFT saw it:

    "sift": {"thread_id": "...", "answer": "5", "consensus_round": 2,
             "rounds": [{"round": 1, "kind": "sticker", "answers": ["4", "3"], "agreed": false}, ...],
             "usage": {"sticker": {"calls": 1, "input_tokens": 180, "output_tokens": 40}, ...}}

`answers` are [sticker-only, query+sticker]; `usage` is per SIFT role, and the standard
`usage` is its sum over every call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sift_graph.events import StageEvent
from sift_graph.serve.settings import MODEL_ID
from sift_graph.state import RoleUsage, total_usage

DONE = "[DONE]"
"""The data of a stream's last server-sent event (OpenAI's end of stream)."""


def event_data(payload: Mapping[str, Any]) -> str:
    """A payload as the data of one server-sent event: JSON on one line (the response,
    `EventSourceResponse`, frames it as `data: ...`)."""
    return json.dumps(payload, ensure_ascii=False)


@dataclass(frozen=True)
class Stamp:
    """What every body of one response shares: the run's thread and the creation time."""

    thread_id: str
    created: int


def _envelope(kind: str, stamp: Stamp) -> dict[str, Any]:
    return {"id": f"chatcmpl-{stamp.thread_id}", "object": kind, "created": stamp.created, "model": MODEL_ID}


def usage_payload(usage: Mapping[str, RoleUsage]) -> dict[str, int]:
    """OpenAI's `usage`: input and output tokens summed over every call of the run."""
    total = total_usage(usage)
    prompt, completion = total["input_tokens"], total["output_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sift_extension(output: Mapping[str, Any], thread_id: str) -> dict[str, Any]:
    rounds = [
        {
            "round": record["round"],
            "kind": record["kind"],
            "answers": [record["predict_sticker"]["answer"], record["predict_query_sticker"]["answer"]],
            "agreed": record["agreed"],
        }
        for record in output.get("rounds") or []
    ]
    return {
        "thread_id": thread_id,
        "answer": output.get("answer"),
        "consensus_round": output.get("consensus_round"),
        "rounds": rounds,
        "usage": dict(output.get("usage") or {}),
    }


def finish_reason(events: Sequence[StageEvent]) -> str:
    """`length` when the answer is the fallback's and it was cut off at the token limit
    (an answer by consensus never is: a cut-off prediction cannot agree), else `stop`."""
    cut = any(event["stage"] == "direct" and event["truncated"] for event in events)
    return "length" if cut else "stop"


def completion_payload(output: Mapping[str, Any], events: Sequence[StageEvent], stamp: Stamp) -> dict[str, Any]:
    return {
        **_envelope("chat.completion", stamp),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": output.get("response") or ""},
                "finish_reason": finish_reason(events),
            }
        ],
        "usage": usage_payload(output.get("usage") or {}),
        "sift": sift_extension(output, stamp.thread_id),
    }


def chunk_payload(delta: Mapping[str, Any], stamp: Stamp, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One `chat.completion.chunk` with one choice (`extra`: more top-level keys)."""
    return {
        **_envelope("chat.completion.chunk", stamp),
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}],
        **extra,
    }


def usage_chunk_payload(usage: Mapping[str, RoleUsage], stamp: Stamp) -> dict[str, Any]:
    """The stream's usage chunk (`stream_options.include_usage`): no choices."""
    return {**_envelope("chat.completion.chunk", stamp), "choices": [], "usage": usage_payload(usage)}


def models_payload(created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": created, "owned_by": "sift"}]}
