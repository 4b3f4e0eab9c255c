"""A streamed OpenAI chat completion, read into LangChain chunks; and how an interrupted
one is continued on each kind of server.

A streamed reply is a series of `chat.completion.chunk` events: content and reasoning
deltas (`reasoning_content`, or `reasoning` on newer vLLM), a finish reason, and with
`stream_options.include_usage` a last event carrying the call's token counts.

Continuing a reply cut off mid-way (see `sift_graph.partials`): the request repeats the
prompt with the text so far as a trailing assistant message, and asks only for the
tokens left of the limit. Whether a server continues that message rather than answer
it anew is the server's business, so each kind is named:

- llama.cpp's `llama-server` prefills a trailing assistant message by default
  ("prefill": the message is sent as is);
- vLLM and SGLang continue it when asked (`continue_final_message: true` with
  `add_generation_prompt: false`);
- OpenAI itself, Ollama, llama-cpp-python's server and unknown servers do not: the call
  starts over ("restart"). `auto` tells them apart by the `owned_by` of the server's
  `/models` listing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.outputs import ChatGenerationChunk

from sift_graph.models.streaming import text_chunk, usage
from sift_graph.partials import Continuation, Partial, current_partial

CONTINUING_SERVERS: dict[str, Continuation] = {
    "llamacpp": "prefill",
    "vllm": "continue_final_message",
    "sglang": "continue_final_message",
}
"""`owned_by` of a server's models -> how it continues a trailing assistant message."""


def whole_completion(response: Any, checked: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """A server that answered with a whole completion, not events: it (`checked`), as one event."""
    if not response.is_closed:
        response.read()
    is_json = "json" in response.headers.get("content-type", "")
    return [completion_as_event(checked(json.loads(response.text) if is_json else response.text))]


def server_continuation(models_listing: Any) -> Continuation:
    """How the server whose `/models` reply this is continues a reply ("restart": it does not)."""
    data = models_listing.get("data") if isinstance(models_listing, dict) else None
    owners = {str(item.get("owned_by", "")).lower() for item in data or [] if isinstance(item, dict)}
    for owner, continuation in CONTINUING_SERVERS.items():
        if owner in owners:
            return continuation
    return "restart"


def continuation_body(body: dict[str, Any], partial: Partial, how: Continuation, limit_key: str) -> dict[str, Any]:
    """The request that continues `partial`: its text as a trailing assistant message,
    the token limit less the tokens already generated."""
    continued = {**body, "messages": [*body["messages"], {"role": "assistant", "content": partial.text}]}
    if isinstance(body.get(limit_key), int):
        continued[limit_key] = body[limit_key] - partial.tokens
    if how == "continue_final_message":
        continued.update(continue_final_message=True, add_generation_prompt=False)
    return continued


def is_event_stream(response: Any) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


@dataclass
class StreamReader:
    """Reads one reply's events into chunks, recording their text in the call's partial reply."""

    continued_from: int = 0
    """Tokens of the partial reply this request continues."""
    chunks: int = 0
    ended: bool = False
    """Whether a finish reason came: a stream that stops without one broke off."""
    counted: bool = False
    """Whether the server said what the reply cost (`stream_options.include_usage`)."""
    records: bool = True
    """False for a usage probe, whose text is no part of the call's reply."""

    def read(self, event: Any) -> ChatGenerationChunk | None:
        chunk = chunk_from_event(event, self.continued_from)
        if chunk is None:
            return None
        self.chunks += 1
        self.ended = self.ended or "finish_reason" in (chunk.generation_info or {})
        self.counted = self.counted or getattr(chunk.message, "usage_metadata", None) is not None
        call = current_partial() if self.records else None
        if call is not None and chunk.text:
            call.record(chunk.text)
        return chunk

    def ended_before(self, lead: list[ChatGenerationChunk]) -> bool:
        """Whether the chunks before the request already end the reply (no request then)."""
        return any("finish_reason" in (chunk.generation_info or {}) for chunk in lead)


USAGE_PROBE_PROMPT = "Reply with the word OK."
"""The prompt of the one-token request that asks a server whether its streams say what a
reply cost, before a model's first streamed call (see `usage_probe_body`)."""

_CONTINUATION_KEYS = ("continue_final_message", "add_generation_prompt")


def usage_probe_body(body: dict[str, Any], limit_key: str) -> dict[str, Any]:
    """A call's `body` made into the smallest streamed request that shows whether the
    server reports usage in streams: the same model and extras, one token, a short prompt.

    Asked once per model, and alone, before its first stream: a server that ignores
    `stream_options.include_usage` (llama-cpp-python's) is then asked whole from the first
    call on, and since that server also ends a stream in flight when another request
    comes (its `interrupt_requests`), calls made at once never stream there."""
    probe = {key: value for key, value in body.items() if key not in _CONTINUATION_KEYS}
    probe.update(messages=[{"role": "user", "content": USAGE_PROBE_PROMPT}], stream=True)
    probe.update(stream_options={"include_usage": True}, **{limit_key: 1})
    return probe


def uncounted_body(body: dict[str, Any]) -> dict[str, Any]:
    """`body` asked without streaming: for a server whose streams do not say what a reply
    cost (llama-cpp-python's ignores `stream_options`), a whole completion does."""
    whole = {**body, "stream": False}
    whole.pop("stream_options", None)
    return whole


def usage_of_completion(completion: dict[str, Any], continued_from: int) -> ChatGenerationChunk:
    """A chunk that carries only the usage of a whole completion (no text: the streamed
    reply already gave it)."""
    event = chunk_from_event({"usage": completion.get("usage") or {}}, continued_from)
    return event if event is not None else text_chunk(usage_metadata=usage(0, continued_from))


def tokens_left(body: dict[str, Any], limit_key: str) -> int | None:
    limit = body.get(limit_key)
    return limit if isinstance(limit, int) else None


def completion_as_event(completion: dict[str, Any]) -> dict[str, Any]:
    """A whole chat completion (a server that does not stream) as one streamed event."""
    choice = completion["choices"][0]
    return {
        **completion,
        "choices": [{"delta": choice.get("message") or {}, "finish_reason": choice.get("finish_reason")}],
    }


def chunk_from_event(event: Any, continued_from: int = 0) -> ChatGenerationChunk | None:
    """One streamed event as a chunk (None for one that carries nothing). A continued
    call's usage is given as the call's own: the text so far counts as output once,
    not again as the continuation's input."""
    if not isinstance(event, dict):
        return None
    metadata: dict[str, Any] = {}
    counts = event.get("usage")
    if isinstance(counts, dict):
        prompt_tokens = int(counts.get("prompt_tokens") or 0)
        completion_tokens = int(counts.get("completion_tokens") or 0)
        metadata["usage_metadata"] = usage(max(prompt_tokens - continued_from, 0), completion_tokens + continued_from)
    choices = event.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    if choice.get("finish_reason"):  # once per reply: merged chunks join their strings
        metadata["finish_reason"] = choice["finish_reason"]
        if event.get("model"):
            metadata["model_name"] = event["model"]
    text = delta.get("content") or ""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or None
    if not (text or reasoning or "usage_metadata" in metadata or "finish_reason" in metadata):
        return None
    return text_chunk(text, reasoning, **metadata)
