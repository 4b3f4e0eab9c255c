"""`sift serve` over a real OpenAI-compatible HTTP upstream on loopback (the fault
server): answers, stages streamed while the run goes on, parallel upstream calls, the
concurrency bound, cancellation by a client that hangs up, error statuses, the key."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from langchain_openai import ChatOpenAI

from sift_graph import SiftContext, cli
from sift_graph.faults import is_transient_fault
from sift_graph.graph import RetryPolicy
from sift_graph.serve import ServeSettings, SiftService, create_app
from sift_graph.testing import FORWARD_STICKER, INVERSE_STICKER, QUESTION, STICKER, boxed

from fault_server import FaultServer
from helpers import serving, wait_until

FAST_RETRY = RetryPolicy(max_attempts=4, initial_interval=0.01, jitter=False, retry_on=is_transient_fault)
SECRET = "sk-test-9c1e5b2d4f6a8c0e7f3a"
REPLIES = {
    "sticker": STICKER,
    "forward": FORWARD_STICKER,
    "inverse": INVERSE_STICKER,
    "predict_sticker": boxed("5"),
    "predict_query_sticker": boxed("5"),
    "direct": boxed("5"),
}
MESSAGES = [{"role": "user", "content": QUESTION}]
PREDICTIONS = ["predict_query_sticker", "predict_sticker"]


@pytest.fixture
def upstream():
    server = FaultServer(REPLIES).start()
    yield server
    server.stop()


@pytest.fixture
def start(upstream):
    """start(**settings) -> (base URL, service): `sift serve` in process, its model
    `openai:test-model` on the fault server (key SECRET); stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start_server(request_timeout=5.0, **settings):
            context = SiftContext(
                model="openai:test-model", base_url=upstream.base_url, api_key=SECRET, request_timeout=request_timeout
            )
            settings = {"checkpoints": "memory", "retry_policy": FAST_RETRY, **settings}
            service = SiftService(ServeSettings(context=context, **settings))
            return stack.enter_context(serving(create_app(service))), service

        yield start_server


def client_for(url):
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def ask(url, **options):
    return client_for(url).chat.completions.create(model="sift", messages=MESSAGES, **options)


def reasoning_of(chunk) -> str:
    """A stream chunk's reasoning text (a field of ours: absent from other deltas)."""
    return (getattr(chunk.choices[0].delta, "reasoning_content", None) or "") if chunk.choices else ""


def gate(upstream, roles, count=1):
    """Hold the next `count` calls of each role until the returned event is set."""
    event = threading.Event()
    for role in roles:
        upstream.plan[role] = [{"until": event}] * count
    return event


def test_plain_and_streamed_answers(start, upstream):
    url, _ = start()
    assert ask(url).choices[0].message.content == boxed("5")
    streamed = ask(url, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == boxed("5")
    chat = ChatOpenAI(model="sift", base_url=url, api_key="unused", max_retries=0)
    assert chat.invoke(QUESTION).content == boxed("5")
    assert "".join(chunk.content for chunk in chat.stream(QUESTION)) == boxed("5")
    assert upstream.count("sticker") == 4 and len(upstream.requests) == 12
    assert {headers["authorization"] for headers in upstream.headers} == {f"Bearer {SECRET}"}


async def test_the_async_client(start, upstream):
    url, _ = start()
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    completion = await client.chat.completions.create(model="sift", messages=MESSAGES)
    assert completion.choices[0].message.content == boxed("5") and completion.sift["consensus_round"] == 1
    stream = await client.chat.completions.create(model="sift", messages=MESSAGES, stream=True)
    assert "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]) == boxed("5")
    assert upstream.count("sticker") == 2


def test_stages_arrive_while_the_run_is_still_going(start, upstream):
    url, _ = start()
    held = gate(upstream, PREDICTIONS)
    chunks = iter(ask(url, stream=True))
    next(chunks)  # the role
    reasoning = ""
    while "[round 1] sticker (generated):" not in reasoning:
        reasoning += reasoning_of(next(chunks))
    # The sticker stage is here while both predictions wait upstream, unanswered.
    wait_until(lambda: sorted(upstream.roles()) == sorted(["sticker", *PREDICTIONS]), "both predictions to be asked")
    held.set()
    rest = [chunk for chunk in chunks if chunk.choices]
    assert rest[-2].choices[0].delta.content == boxed("5") and rest[-1].choices[0].finish_reason == "stop"


def test_a_stages_tokens_arrive_before_the_stage_ends(start, upstream):
    """The sticker's first three tokens reach the official client while the upstream
    holds back the rest: the stage streams as it is generated, not once it is done."""
    url, _ = start()
    rest = threading.Event()
    upstream.plan["sticker"] = [{"content": STICKER, "pause_after": 3, "until": rest}]
    chunks = iter(ask(url, stream=True))
    first_words = STICKER.split()[0]
    reasoning = ""
    while first_words not in reasoning:
        reasoning += reasoning_of(next(chunks))
    assert reasoning.startswith("[round 1] sticker: ") and not rest.is_set()
    rest.set()
    streamed = reasoning + "".join(reasoning_of(chunk) for chunk in chunks)
    assert STICKER in streamed and "[round 1] predict_sticker: " + boxed("5") in streamed


def test_eight_concurrent_requests_make_their_upstream_calls_in_parallel(start, upstream):
    url, service = start(max_concurrency=8)
    stickers, predictions = gate(upstream, ["sticker"], 8), gate(upstream, PREDICTIONS, 8)
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(ask, url) for _ in range(8)]
        # All 8 sticker calls are upstream at once (none can finish before the gate opens) ...
        wait_until(lambda: upstream.count("sticker") == 8, "8 sticker calls in flight")
        stickers.set()
        # ... then all 16 predictions, both of every run.
        wait_until(lambda: sum(map(upstream.count, PREDICTIONS)) == 16, "16 predictions in flight")
        predictions.set()
        assert {answer.result(timeout=30).choices[0].message.content for answer in answers} == {boxed("5")}
    assert upstream.max_in_flight == 16
    wait_until(lambda: service.active == 0, "the runs to end")  # a run ends just after its answer is sent


def test_a_request_past_the_bound_is_429_with_retry_after(start, upstream):
    url, service = start(max_concurrency=2)
    held = gate(upstream, ["sticker"], 2)
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(ask, url) for _ in range(2)]
        wait_until(lambda: upstream.count("sticker") == 2, "two runs in progress")
        with pytest.raises(openai.RateLimitError) as refused:
            ask(url)
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.code == "rate_limit_exceeded" and "limit of 2 requests" in refused.value.message
        held.set()
        assert all(answer.result(timeout=30).sift["answer"] == "5" for answer in running)
    assert upstream.count("sticker") == 2  # the refused request made no call
    assert ask(url).sift["answer"] == "5"  # the slots are free again
    wait_until(lambda: service.active == 0, "the runs to end")  # a run ends just after its answer is sent


def hang_up_plain(url):
    """Send a plain request on a raw socket; return the socket, to close it mid-run."""
    body = json.dumps({"model": "sift", "messages": MESSAGES}).encode()
    host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
    sock = socket.create_connection((host, int(port)))
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_a_client_that_hangs_up_cancels_its_upstream_calls(start, upstream, tmp_path, capsys, stream):
    store = tmp_path / "runs.sqlite"
    url, service = start(checkpoints=str(store))
    held = gate(upstream, PREDICTIONS)
    try:
        if stream:
            chunks = ask(url, stream=True)
            thread = next(iter(chunks)).id.removeprefix("chatcmpl-")
            connection = chunks
        else:
            connection = hang_up_plain(url)
        wait_until(lambda: sorted(upstream.roles()) == sorted(["sticker", *PREDICTIONS]), "both predictions asked")
        connection.close()
        # Both calls in flight were dropped upstream, the run is over, and no call followed.
        wait_until(lambda: sorted(upstream.abandoned) == PREDICTIONS, "the upstream calls to be cancelled")
        wait_until(lambda: service.active == 0, "the run to end")
        assert len(upstream.requests) == 3
    finally:
        held.set()
    if stream:  # the run was kept: `sift solve --resume` finishes it, the sticker not asked again
        assert cli.main(["solve", "--resume", thread, "--checkpoints", str(store), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["answer"] == "5"
        assert upstream.count("sticker") == 1 and upstream.count("predict_sticker") == 2


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        ({"status": 503}, 502, "the upstream model failed: the model server answered HTTP 503: injected 503"),
        ({"status": 400, "message": "context too long"}, 502, "answered HTTP 400: context too long"),
        ({"hang": 5.0}, 504, "the upstream model did not answer in time, retries included"),
        ({"status": 401, "message": f"bad key {SECRET}"}, 502, "refused the API key (HTTP 401)"),
    ],
    ids=["503", "400", "timeout", "401"],
)
def test_upstream_faults_get_one_clear_status(start, upstream, fault, status, message, stream):
    url, service = start(request_timeout=0.5)
    upstream.plan["sticker"] = [fault] * 4
    with pytest.raises(openai.APIStatusError) as failed:
        ask(url, stream=stream)
    assert failed.value.status_code == status
    assert message in failed.value.body["message"] and SECRET not in failed.value.response.text
    wait_until(lambda: service.active == 0, "the runs to end")  # a run ends just after its answer is sent


def test_the_api_key_never_leaves_the_server(start, upstream, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "runs.sqlite"
    url, _ = start(checkpoints=str(store))
    seen = [ask(url).model_dump_json(), "".join(chunk.model_dump_json() for chunk in ask(url, stream=True))]
    upstream.plan["sticker"] = [{"status": 401, "message": f"Incorrect API key provided: {SECRET}"}]
    with pytest.raises(openai.APIStatusError) as failed:
        ask(url)
    seen.append(failed.value.response.text)
    assert all(f"Bearer {SECRET}" == headers["authorization"] for headers in upstream.headers)  # it was used
    assert not [text for text in seen if SECRET in text]
    assert SECRET not in caplog.text and "run " in caplog.text  # the failure was logged, without it
    assert SECRET.encode() not in b"".join(
        path.read_bytes() for path in tmp_path.glob("runs.sqlite*") if path.is_file()
    )
