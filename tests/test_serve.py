"""`sift serve` in process (uvicorn on a loopback port) over the scripted model, driven
with the official `openai` client (sync, async, streaming) and with `ChatOpenAI`."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from sift_graph import SiftContext, cli
from sift_graph.faults import is_transient_fault
from sift_graph.graph import RetryPolicy
from sift_graph.serve import ServeSettings, SiftService, create_app
from sift_graph.serve.app import PING_INTERVAL_S
from sift_graph.serve.protocol import CONTEXT_HEADER
from sift_graph.testing import QUESTION, ScriptedChatModel, boxed, script_for

from helpers import STAGE_TEXT, postgres_url, serving, wait_until

FAST_RETRY = RetryPolicy(max_attempts=4, initial_interval=0.01, jitter=False, retry_on=is_transient_fault)
ROUND_2 = script_for(["4", "5"], ["3", "5"])
"""Round 1 disagrees (4 vs 3), round 2 agrees on 5."""
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture
def start():
    """start(model, **settings) -> (base URL, service): a server of its own, stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start_server(model, ping_interval_s=PING_INTERVAL_S, **settings):
            settings = {"checkpoints": "memory", "retry_policy": FAST_RETRY, **settings}
            context = model if isinstance(model, SiftContext) else SiftContext(model=model)
            service = SiftService(ServeSettings(context=context, **settings))
            return stack.enter_context(serving(create_app(service, ping_interval_s=ping_interval_s))), service

        yield start_server


def client_for(url):
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def stage_kinds(stream):
    """A stream's chunks as (kind, text): text (a stage's tokens), stage (its event),
    answer, finish or usage, in order."""
    seen = []
    for chunk in stream:
        if not chunk.choices:
            seen.append(("usage", chunk.usage.total_tokens))
        elif reasoning := getattr(chunk.choices[0].delta, "reasoning_content", None):
            seen.append(("text" if STAGE_TEXT.match(reasoning) else "stage", reasoning))
        elif chunk.choices[0].delta.content:
            seen.append(("answer", chunk.choices[0].delta.content))
        elif chunk.choices[0].finish_reason:
            seen.append(("finish", chunk.choices[0].finish_reason))
    return seen


def test_the_model_is_listed(start):
    url, _ = start(ScriptedChatModel(script=ROUND_2))
    assert [model.id for model in client_for(url).models.list()] == ["sift"]


def test_a_plain_answer_with_the_sync_client(start):
    model = ScriptedChatModel(script=ROUND_2)
    url, _ = start(model)
    raw = client_for(url).chat.completions.with_raw_response.create(model="sift", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == boxed("5")
    assert completion.choices[0].finish_reason == "stop"
    sift = completion.sift
    assert sift["answer"] == "5" and sift["consensus_round"] == 2
    assert [record["answers"] for record in sift["rounds"]] == [["4", "3"], ["5", "5"]]
    assert raw.headers["x-sift-thread-id"] == sift["thread_id"]
    assert sum(role["calls"] for role in sift["usage"].values()) == 6
    # usage is every call's, summed (the fake counts words)
    assert completion.usage.prompt_tokens == sum(len(call.prompt.split()) for call in model.calls)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


async def test_a_plain_answer_with_the_async_client(start):
    url, _ = start(ScriptedChatModel(script=ROUND_2))
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    completion = await client.chat.completions.create(model="sift", messages=MESSAGES)
    assert completion.choices[0].message.content == boxed("5") and completion.sift["consensus_round"] == 2


def test_a_stream_sends_every_stage_then_the_answer_then_usage(start):
    url, _ = start(ScriptedChatModel(script=ROUND_2))
    stream = client_for(url).chat.completions.create(
        model="sift", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    seen = [(kind, text) for kind, text in stage_kinds(stream) if kind != "text"]
    assert [kind for kind, _ in seen] == ["stage"] * 8 + ["answer", "finish", "usage"]
    stages = [text for kind, text in seen if kind == "stage"]
    assert stages[0].startswith("[round 1] sticker (generated):\n    **Conditions:**")
    assert stages[3] == "[round 1] no consensus: 4 vs 3\n"
    assert stages[4].startswith("[round 2] sticker (forward-optimized):")
    assert stages[7] == "[round 2] consensus: 5 vs 5\n"
    assert seen[8] == ("answer", boxed("5")) and seen[9] == ("finish", "stop")


class RecordedStream(httpx.SyncByteStream):
    """A response body, each chunk handed to `record` as it is read."""

    def __init__(self, stream: httpx.SyncByteStream, record) -> None:
        self.stream, self.record = stream, record

    def __iter__(self):
        for chunk in self.stream:
            self.record(chunk)
            yield chunk

    def close(self) -> None:
        self.stream.close()


class SeesPings(httpx.HTTPTransport):
    """An HTTP transport that keeps the raw bytes of the responses it reads, and notes
    when they carry a keep-alive ping (an SSE comment line, `: ...`)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw = b""
        self.pinged = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        return httpx.Response(
            response.status_code, headers=response.headers, stream=RecordedStream(response.stream, self.record)
        )

    def record(self, chunk: bytes) -> None:
        self.raw += chunk
        if re.search(rb"(^|\n):", self.raw):
            self.pinged.set()


def test_a_long_silent_stage_gets_keep_alive_pings_that_the_sdk_ignores(start):
    # The first sticker-only prediction waits until the client has seen a ping.
    model = ScriptedChatModel(script=ROUND_2, hold={"predict_sticker": 1})
    url, _ = start(model, ping_interval_s=0.05)
    transport = SeesPings()

    def answer_after_a_ping() -> None:
        transport.pinged.wait(timeout=30)
        model.hold = {}  # answers now (even with no ping: then the assertion below says so)

    threading.Thread(target=answer_after_a_ping, daemon=True).start()
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, http_client=httpx.Client(transport=transport))
    stream = client.chat.completions.create(
        model="sift", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    seen = [(kind, text) for kind, text in stage_kinds(stream) if kind != "text"]

    assert transport.pinged.is_set()
    pings = [line for line in transport.raw.split(b"\n") if line.startswith(b":")]
    assert pings and all(line.startswith(b": ping") for line in pings)
    # The SDK read past them: the same chunks as a stream without pings.
    assert [kind for kind, _ in seen] == ["stage"] * 8 + ["answer", "finish", "usage"]
    assert seen[8] == ("answer", boxed("5")) and seen[9] == ("finish", "stop")
    # OpenAI's framing: `data: ` events, each ending with a blank line, the last [DONE].
    events = [event for event in transport.raw.decode().split("\n\n") if event and not event.startswith(":")]
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    assert events[-1] == "data: [DONE]"


def test_chat_openai_invokes_and_streams(start):
    url, _ = start(ScriptedChatModel(script=ROUND_2))
    chat = ChatOpenAI(model="sift", base_url=url, api_key="unused", max_retries=0, stream_usage=True)
    reply = chat.invoke(QUESTION)
    assert reply.content == boxed("5")
    assert reply.usage_metadata["input_tokens"] > 0 and reply.usage_metadata["output_tokens"] > 0
    chunks = list(chat.stream(QUESTION))
    assert "".join(chunk.content for chunk in chunks) == boxed("5")
    assert sum((chunk.usage_metadata or {}).get("total_tokens", 0) for chunk in chunks) > 0


def test_earlier_messages_are_context_for_every_step(start):
    model = ScriptedChatModel(script=ROUND_2)
    url, _ = start(model)
    messages = [
        {"role": "system", "content": "Prices are in euros."},
        {"role": "user", "content": "Ann has 3 apples."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "She buys 2 more. How many apples does she have?"},
    ]
    client_for(url).chat.completions.create(model="sift", messages=messages)
    sticker_prompt = next(call.prompt for call in model.calls if call.role == "sticker")
    assert (
        f"{CONTEXT_HEADER}\nSystem: Prices are in euros.\nUser: Ann has 3 apples.\nAssistant: Noted." in sticker_prompt
    )
    assert "She buys 2 more." in next(call.prompt for call in model.calls if call.role == "predict_query_sticker")


def test_a_requests_decoding_overrides_the_servers(start):
    model = ScriptedChatModel(script=script_for(["5"], ["5"]))
    url, _ = start(SiftContext(model=model, max_tokens=300))
    client = client_for(url)
    client.chat.completions.create(model="sift", messages=MESSAGES, max_tokens=77, temperature=0.5, top_p=0.8)
    assert [call.kwargs for call in model.calls] == [{"max_tokens": 77, "temperature": 0.5, "top_p": 0.8}] * 3
    client.chat.completions.create(model="sift", messages=MESSAGES)
    assert [call.kwargs for call in model.calls[3:]] == [{"max_tokens": 300, "temperature": 0.0}] * 3


def test_bad_requests_get_openais_error_shape(start):
    model = ScriptedChatModel(script=ROUND_2)
    url, _ = start(model)
    client = client_for(url)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="sift", messages=MESSAGES, temperature=5)
    assert bad.value.param == "temperature" and bad.value.type == "invalid_request_error"
    assert "temperature: expected a number in [0, 2], got 5" in bad.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert unknown.value.code == "model_not_found"
    not_json = httpx.post(f"{url}/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and set(not_json.json()["error"]) == {"message", "type", "param", "code"}
    assert model.calls == []  # nothing reached the model


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_model_fault_that_outlasts_the_retries_is_502(start, stream):
    model = ScriptedChatModel(script=ROUND_2, failures={"sticker": 99})
    url, service = start(model)
    with pytest.raises(openai.APIStatusError) as failed:
        client_for(url).chat.completions.create(model="sift", messages=MESSAGES, stream=stream)
    assert failed.value.status_code == 502
    message = failed.value.body["message"]
    assert message == "the upstream model failed: ConnectionError: scripted fault 4 for role 'sticker'"
    assert failed.value.response.headers["x-sift-thread-id"]
    wait_until(lambda: service.active == 0, "the runs to end")  # a run ends just after its answer is sent


def test_a_fault_after_the_first_stage_ends_the_stream_with_an_error(start):
    url, _ = start(ScriptedChatModel(script=ROUND_2, failures={"predict_sticker": 99}))
    stream = client_for(url).chat.completions.create(model="sift", messages=MESSAGES, stream=True)
    stages = []
    with pytest.raises(openai.APIError, match="the upstream model failed: ConnectionError: scripted fault 4"):
        for chunk in stream:
            stages.append(getattr(chunk.choices[0].delta, "reasoning_content", None))
    assert any(stage and stage.startswith("[round 1] sticker") for stage in stages)


def test_eight_concurrent_requests_all_answer(start):
    url, service = start(ScriptedChatModel(script=script_for(["5"], ["5"]), latency=0.05), max_concurrency=8)
    client = client_for(url)
    with ThreadPoolExecutor(8) as pool:
        completions = list(
            pool.map(lambda _: client.chat.completions.create(model="sift", messages=MESSAGES), range(8))
        )
    assert {completion.sift["answer"] for completion in completions} == {"5"}
    assert len({completion.sift["thread_id"] for completion in completions}) == 8
    wait_until(lambda: service.active == 0, "the runs to end")  # a run ends just after its answer is sent


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_failed_request_is_resumed_by_sift_solve(start, tmp_path, capsys, kind):
    """The server stores a run as `sift solve` does: `--resume THREAD` finishes it."""
    spec = tmp_path / "model.json"
    spec.write_text(json.dumps({"script": ROUND_2, "failures": {"forward": 4}}), encoding="utf-8")
    store = str(tmp_path / "runs.sqlite") if kind == "sqlite" else postgres_url()
    url, _ = start(SiftContext(model=f"scripted:{spec}", max_tokens=99), checkpoints=store)
    with pytest.raises(openai.InternalServerError) as failed:  # round 2's sticker failed for good
        client_for(url).chat.completions.create(model="sift", messages=MESSAGES)
    thread = failed.value.response.headers["x-sift-thread-id"]

    assert cli.main(["solve", "--resume", thread, "--checkpoints", store, "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["thread_id"] == thread and result["answer"] == "5" and result["consensus_round"] == 2
    assert result["usage"]["sticker"]["calls"] == 1  # round 1 was kept, not redone
    assert "resuming at: forward_optimize" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--max-concurrency", "0"], "max_concurrency: expected an integer >= 1, got 0"),
        (["--port", "70000"], "--port: expected 0 to 65535"),
        (["--temperature", "3"], "temperature: expected a number in [0, 2]"),
        (["--checkpoints", "/proc/no-such-dir/runs.sqlite"], "cannot open checkpoints '/proc/no-such-dir/runs.sqlite'"),
    ],
)
def test_sift_serve_bad_input_exits_2_with_one_line(argv, words, tmp_path, capsys):
    spec = tmp_path / "model.json"
    spec.write_text(json.dumps(ROUND_2), encoding="utf-8")
    assert cli.main(["serve", "--model", f"scripted:{spec}", *argv]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("sift: error: ") and words in err.splitlines()[-1]
