"""Integration: SIFT through ChatOpenAI against a real OpenAI-compatible server
(llama-cpp-python's, serving the embedded SmolLM2 GGUF) on loopback: the `llama_server`
fixture of conftest.py."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langgraph.types import RetryPolicy

from sift_graph import SiftContext, build_sift_graph
from sift_graph.calls import TAG_PREFIX

pytestmark = pytest.mark.slow

QUESTION = "Tom has 4 boxes with 6 pencils in each box. He gives away 5 pencils. How many pencils does he have left?"


class CallWatcher(BaseCallbackHandler):
    """Records, per SIFT role, the server's token counts and which calls overlapped."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.roles: dict[Any, str] = {}
        self.in_flight: set[str] = set()
        self.overlaps: list[set[str]] = []
        self.server_usage: dict[str, list[int]] = {}

    def on_chat_model_start(self, serialized, messages, *, run_id, tags=None, **kwargs) -> None:
        role = next(tag[len(TAG_PREFIX) :] for tag in tags or [] if tag.startswith(TAG_PREFIX))
        with self.lock:
            self.roles[run_id] = role
            self.in_flight.add(role)
            self.overlaps.append(set(self.in_flight))

    def on_llm_end(self, response, *, run_id, **kwargs) -> None:
        # A streamed reply carries the server's counts on its message (LangChain's usage_metadata).
        usage = response.generations[0][0].message.usage_metadata or {}
        with self.lock:
            role = self.roles[run_id]
            self.in_flight.discard(role)
            totals = self.server_usage.setdefault(role, [0, 0])
            totals[0] += usage.get("input_tokens", 0)
            totals[1] += usage.get("output_tokens", 0)


async def test_a_real_sift_run_through_the_server(llama_server):
    watcher = CallWatcher()
    context = SiftContext(model="openai:smollm2", base_url=llama_server, max_tokens=48, request_timeout=300)
    result = (
        await build_sift_graph().compile().ainvoke({"question": QUESTION}, {"callbacks": [watcher]}, context=context)
    )

    # A call made again in the run (an unchanged sticker) is served free: made + reused.
    calls = {role: usage["calls"] + usage.get("reused_calls", 0) for role, usage in result["usage"].items()}
    assert sum(calls.values()) == {1: 3, 2: 6, 3: 10, None: 11}[result["consensus_round"]]
    assert calls["predict_sticker"] == calls["predict_query_sticker"] == len(result["rounds"])
    # usage is the server's own count, role by role
    assert {
        role: [u["input_tokens"], u["output_tokens"]] for role, u in result["usage"].items()
    } == watcher.server_usage
    for usage in result["usage"].values():
        assert usage["calls"] == 0 or (usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 48 * usage["calls"])
    # both predictions of a round were requested before either came back
    assert {"predict_sticker", "predict_query_sticker"} in watcher.overlaps


def test_the_sync_path_and_the_token_limit(llama_server):
    context = SiftContext(
        model="openai:smollm2", base_url=llama_server, max_tokens=8, forward_rounds=0, inverse_rounds=0
    )
    result = build_sift_graph().compile().invoke({"question": QUESTION}, context=context)
    first = result["rounds"][0]
    assert first["predict_sticker"]["truncated"] or result["usage"]["predict_sticker"]["output_tokens"] < 8
    assert all(usage["output_tokens"] <= 8 * usage["calls"] for usage in result["usage"].values())


async def test_runs_at_once_on_one_model(llama_server):
    """llama-cpp-python's server ends a stream in flight when another request comes (its
    `interrupt_requests`, on by default) and its streams carry no usage: the model's usage
    probe finds that out before any call, so calls made at once are asked whole and none
    is cut off (a `sift eval --concurrency 2` on this server failed every question so)."""
    context = SiftContext(
        model="openai:smollm2",
        base_url=llama_server,
        max_tokens=24,
        forward_rounds=0,
        inverse_rounds=0,
        request_timeout=299,  # a model of its own (the timeout is in its key): not yet probed
        cache="off",
    )
    graph = build_sift_graph(retry_policy=RetryPolicy(max_attempts=1)).compile()  # a cut stream fails the run
    results = await asyncio.gather(*(graph.ainvoke({"question": QUESTION}, context=context) for _ in range(2)))
    for result in results:
        calls = sum(usage["calls"] for usage in result["usage"].values())
        assert calls == (3 if result["consensus_round"] == 1 else 4)
        assert all(usage["output_tokens"] > 0 for usage in result["usage"].values() if usage["calls"])
