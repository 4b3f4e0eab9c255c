"""Every call streams, and a partial reply outlives an interrupt: `messages` streams of
each role, the partials' store, and `sift solve` killed mid-prediction and resumed
against a slow streaming server on loopback."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import pytest

from sift_graph import SiftContext, build_sift_graph
from sift_graph.partials import Partial, PartialCall, PartialStore, call_key, recording
from sift_graph.testing import QUESTION, boxed, script_for

from fault_server import FaultServer, user_prompt
from helpers import FAST_RETRY, finished, flatten, start_sift, wait_until

LONG_SOLUTION = "".join(f"step{number} " for number in range(120)) + boxed("4")
"""A long prediction (the fake server streams one word, a "token", per event)."""
LONG_TOKENS = len(LONG_SOLUTION.split())


@pytest.fixture
def server():
    running = FaultServer(flatten(script_for(["4"], ["4"]))).start()
    yield running
    running.stop()


def context_for(server: FaultServer, **kwargs) -> SiftContext:
    return SiftContext(model="openai:test-model", base_url=server.base_url, **{"request_timeout": 5.0, **kwargs})


def test_messages_stream_yields_the_tokens_of_each_role_in_order(server):
    graph = build_sift_graph(retry_policy=FAST_RETRY).compile()
    texts: dict[tuple[str, int], str] = {}
    tagged: set[str] = set()
    for message, metadata in graph.stream({"question": QUESTION}, context=context_for(server), stream_mode="messages"):
        key = (metadata["sift_role"], metadata["sift_round"])
        texts[key] = texts.get(key, "") + str(message.content)
        tagged.update(tag for tag in metadata["tags"] if tag.startswith("sift:"))
    replies = flatten(script_for(["4"], ["4"]))
    assert texts == {
        ("sticker", 1): replies["sticker"],
        ("predict_sticker", 1): replies["predict_sticker"],
        ("predict_query_sticker", 1): replies["predict_query_sticker"],
    }
    assert tagged == {"sift:sticker", "sift:predict_sticker", "sift:predict_query_sticker"}
    assert all(len(text.split()) > 1 for text in texts.values())  # several tokens, not one chunk per stage


async def test_sift_solve_on_a_terminal_shows_each_stage_as_it_is_generated(server):
    import io

    from sift_graph.cli.run_stream import stream_run
    from sift_graph.models import resolve_model

    context = context_for(server)
    context.model = resolve_model(context.model, context.connection)
    from langgraph.checkpoint.memory import InMemorySaver

    progress = io.StringIO()
    graph = build_sift_graph(retry_policy=FAST_RETRY).compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "live"}}
    result = await stream_run(graph, {"question": QUESTION}, config, context, progress, live=True)
    shown = progress.getvalue()
    replies = flatten(script_for(["4"], ["4"]))
    assert f"[round 1] sticker: {replies['sticker']}\n" in shown
    assert "[round 1] sticker (generated):" in shown  # the stage's event, as without live text
    assert f"[round 1] predict_sticker: {replies['predict_sticker']}" in shown and result["answer"] == "4"


def test_a_partial_is_saved_while_streaming_and_deleted_when_the_call_ends(tmp_path):
    store = PartialStore(tmp_path / "partials.sqlite")
    call = PartialCall(key="k", store=store, save_every_tokens=3)
    for word in ["a ", "b ", "c ", "d "]:
        call.record(word)
    assert store.load("k") == Partial(text="a b c ", tokens=3)
    call.finished()
    assert store.load("k") is None and store.count() == 0


def test_a_dropped_stream_is_continued_by_the_retry_and_each_token_counted_once(server, tmp_path):
    """The stream breaks off after 70 tokens (64 saved); the retry repeats the prompt with
    the saved text as a trailing assistant message and asks only for the tokens left."""
    server.replies["predict_query_sticker"] = LONG_SOLUTION
    server.plan["predict_query_sticker"] = [{"content": LONG_SOLUTION, "cut_after": 70}]
    partials = tmp_path / "partials.sqlite"
    graph = build_sift_graph(retry_policy=FAST_RETRY).compile()
    result = graph.invoke({"question": QUESTION}, context=context_for(server, partials=str(partials), max_tokens=500))
    continued = [request for request in server.requests if request["messages"][-1]["role"] == "assistant"]
    assert len(continued) == 1
    saved = "".join(f"step{number} " for number in range(64))
    assert continued[0]["messages"][-1]["content"] == saved and continued[0]["max_tokens"] == 500 - 64
    assert result["answer"] == "4" and result["response"] == LONG_SOLUTION
    usage = result["rounds"][0]["usage"]["predict_query_sticker"]
    assert usage["output_tokens"] == LONG_TOKENS and usage["calls"] == 1
    assert usage["continued_calls"] == 1 and usage["continued_tokens"] == 64
    assert usage["input_tokens"] == len(user_prompt(continued[0]).split())  # the saved text is not input again
    assert PartialStore(partials).count() == 0


@pytest.mark.parametrize("invoke", ["sync", "async"])
async def test_a_server_whose_streams_carry_no_usage_is_asked_whole(invoke):
    """llama-cpp-python's server ignores `stream_options.include_usage`: a one-token probe
    finds that out before the model's first call, and every call is asked whole, counted
    by the server (no reply is generated twice)."""
    server = FaultServer(flatten(script_for(["4"], ["4"])), stream_usage=False).start()
    try:
        graph = build_sift_graph().compile()
        run = graph.invoke if invoke == "sync" else graph.ainvoke
        context = context_for(server, cache="off")
        result = run({"question": QUESTION}, context=context)
        result = await result if invoke == "async" else result
    finally:
        server.stop()
    [probe] = server.probes
    assert probe["stream"] and probe["max_tokens"] == 1 and probe["model"] == "test-model"
    assert len(server.requests) == 3  # the three calls, each once
    assert not any(request.get("stream") or "stream_options" in request for request in server.requests)
    usage = result["usage"]
    assert sum(role["calls"] for role in usage.values()) == 3
    for role in usage.values():
        assert role["input_tokens"] > 0 and role["output_tokens"] > 0


def test_a_reply_streamed_without_usage_after_a_counting_probe_is_asked_again_whole():
    """A server whose probe's stream carried usage but whose reply's did not: that reply is
    asked again whole to be counted, and the model's later calls are asked whole."""
    server = FaultServer(flatten(script_for(["4"], ["4"])), stream_usage=False, probe_usage=True).start()
    try:
        result = build_sift_graph().compile().invoke({"question": QUESTION}, context=context_for(server, cache="off"))
    finally:
        server.stop()
    assert len(server.probes) == 1
    streamed = [request for request in server.requests if request.get("stream")]
    assert len(streamed) == 1 and len(server.requests) == 3 + 1  # 3 calls; the first asked twice
    assert sum(role["calls"] for role in result["usage"].values()) == 3
    for role in result["usage"].values():
        assert role["input_tokens"] > 0 and role["output_tokens"] > 0


@pytest.mark.parametrize("stream_usage", [True, False])
async def test_calls_made_at_once_wait_for_one_usage_probe(stream_usage):
    """Runs started at once on one model send one probe, and no call streams before its
    answer is known: llama-cpp-python's server ends a stream in flight when another
    request comes, so there no call may stream beside another (they are all asked whole)."""
    server = FaultServer(flatten(script_for(["4"], ["4"])), stream_usage=stream_usage).start()
    try:
        graph = build_sift_graph().compile()
        context = context_for(server, cache="off", request_timeout=4.5)  # a model of its own (timeout in its key)
        results = await asyncio.gather(*(graph.ainvoke({"question": QUESTION}, context=context) for _ in range(3)))
    finally:
        server.stop()
    assert len(server.probes) == 1
    assert all(result["answer"] == "4" for result in results) and len(server.requests) == 3 * 3
    assert all(bool(request.get("stream")) == stream_usage for request in server.requests)


def test_a_server_that_cannot_continue_restarts_the_call(server, tmp_path):
    server.owned_by = "openai"
    server.replies["predict_query_sticker"] = LONG_SOLUTION
    server.plan["predict_query_sticker"] = [{"content": LONG_SOLUTION, "cut_after": 70}]
    partials = tmp_path / "partials.sqlite"
    graph = build_sift_graph(retry_policy=FAST_RETRY).compile()
    result = graph.invoke({"question": QUESTION}, context=context_for(server, partials=str(partials)))
    assert all(request["messages"][-1]["role"] == "user" for request in server.requests)
    assert result["response"] == LONG_SOLUTION and "continued_calls" not in result["usage"]["predict_query_sticker"]
    assert PartialStore(partials).count() == 0


def test_partial_keys_name_the_call():
    base = call_key({"model": "m"}, "p", {"temperature": 0.0})
    assert base == call_key({"model": "m"}, "p", {"temperature": 0.0})
    assert base != call_key({"model": "m"}, "p", {"temperature": 0.7, "seed": 1})
    assert base != call_key({"model": "n"}, "p", {"temperature": 0.0})
    assert base != call_key({"model": "m"}, "q", {"temperature": 0.0})


def test_recording_is_scoped_to_the_call():
    from sift_graph.partials import current_partial

    call = PartialCall(key="k", store=None)
    with recording(call):
        assert current_partial() is call
    assert current_partial() is None


# --- real processes: `sift solve` killed mid-prediction, then resumed -----------------------


def saved_tokens(partials: Path) -> int:
    if not partials.exists():
        return 0
    with sqlite3.connect(partials) as connection:
        try:
            rows = connection.execute("SELECT tokens FROM sift_partials").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return 0
    return max((tokens for (tokens,) in rows), default=0)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_sift_solve_interrupted_mid_prediction_continues_it_on_resume(tmp_path, how):
    server = FaultServer(flatten(script_for(["4"], ["4"])), token_delay=0.05).start()
    server.replies["predict_query_sticker"] = LONG_SOLUTION
    try:
        checkpoints = tmp_path / "checkpoints.sqlite"
        partials = tmp_path / "partials.sqlite"
        flags = ["--checkpoints", str(checkpoints), "--json"]
        model = ["--model", "openai:test-model", "--base-url", server.base_url, "--max-tokens", "400"]
        process = start_sift("solve", QUESTION, *model, *flags)
        wait_until(lambda: saved_tokens(partials) >= 64, "64 tokens of a prediction saved", timeout=60)
        process.send_signal(how)
        _, err = process.communicate(timeout=30)
        assert process.returncode != 0
        thread = err.split("thread: ", 1)[1].split()[0] if "thread: " in err else None
        assert thread is not None, err
        saved = saved_tokens(partials)
        assert saved >= 64
        before = len(server.requests)
        result = finished(start_sift("solve", "--resume", thread, *flags))
        continued = [r for r in server.requests[before:] if r["messages"][-1]["role"] == "assistant"]
        assert len(continued) == 1
        text = continued[0]["messages"][-1]["content"]
        assert LONG_SOLUTION.startswith(text) and len(text.split()) == saved
        assert continued[0]["max_tokens"] == 400 - saved
        assert result["answer"] == "4" and result["consensus_round"] == 1
        assert result["usage"]["predict_query_sticker"]["continued_tokens"] == saved
        assert saved_tokens(partials) == 0  # the partial is gone
    finally:
        server.stop()


# --- the embedded model: an interrupted greedy call continued from its saved tokens ---------


@pytest.mark.slow
def test_an_interrupted_greedy_call_on_the_embedded_model_continues_to_the_same_reply(tmp_path):
    from langchain_core.messages import HumanMessage

    from sift_graph.models import resolve_model
    from sift_graph.models.specs import LoadOptions

    fp32 = resolve_model("default", options=LoadOptions(dtype="float32"))
    messages = [HumanMessage("Write four lines about the sea.")]
    whole = fp32.invoke(messages, max_tokens=40)
    store = PartialStore(tmp_path / "partials.sqlite")
    interrupted = PartialCall(key="sea", store=store, save_every_tokens=8)
    with recording(interrupted):
        stream = fp32.stream(messages, max_tokens=40)
        streamed = "".join(str(next(stream).content) for _ in range(21))
        stream.close()  # the caller goes away mid-reply: its request is cancelled
    found = store.load("sea")
    assert found is not None and found.tokens == 16 and found.token_ids is not None
    assert str(whole.content).startswith(streamed) and streamed.startswith(found.text)
    resumed = PartialCall(key="sea", store=store, found=found)
    with recording(resumed):
        continued = fp32.invoke(messages, max_tokens=40)
    assert continued.content == whole.content and resumed.continued_from == 16
    assert continued.usage_metadata == whole.usage_metadata  # each token counted once
    resumed.finished()
    assert store.count() == 0


@pytest.mark.slow
def test_sift_eval_killed_mid_question_continues_the_call_in_flight_when_rerun(tmp_path):
    import json

    sample = Path(__file__).parent / "data" / "gsm8k_sample.jsonl"
    server = FaultServer(flatten(script_for(["4"], ["4"])), token_delay=0.05).start()
    server.replies["direct"] = LONG_SOLUTION  # the CoT baseline: a long call
    try:
        cache = tmp_path / "cache.sqlite"
        model = ["--model", "openai:test-model", "--base-url", server.base_url]
        command = ["eval", "--dataset", str(sample), "--limit", "1", *model, "--cache", str(cache)]
        process = start_sift(*command, "--out", str(tmp_path / "out"))
        wait_until(lambda: saved_tokens(cache) >= 32, "32 tokens of the baseline saved", timeout=60)
        process.kill()
        process.communicate(timeout=30)
        saved = saved_tokens(cache)
        before = len(server.requests)
        rerun = start_sift(*command, "--out", str(tmp_path / "out"))
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        continued = [r for r in server.requests[before:] if r["messages"][-1]["role"] == "assistant"]
        assert len(continued) == 1 and len(continued[0]["messages"][-1]["content"].split()) == saved
        records = [json.loads(line) for path in (tmp_path / "out").glob("*.jsonl") for line in path.open()]
        assert records and saved_tokens(cache) == 0
    finally:
        server.stop()
