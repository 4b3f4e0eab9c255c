"""The OpenAI-compatible path against a fault-injecting server on loopback: retries,
clear errors, reasoning models, truncation, concurrency, resume, and secrets."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import openai
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from sift_graph import SiftContext, build_sift_graph
from sift_graph.faults import is_transient_fault
from sift_graph.models import OpenAICompatibleChatModel, chat_completion_request, resolve_model
from sift_graph.prompts import sticker_prompt
from sift_graph.testing import FORWARD_STICKER, QUESTION, STICKER, boxed, script_for

from fault_server import FaultServer
from helpers import FAST_RETRY, flatten

SECRET = "sk-test-7f3a9c1e5b2d4f6a8c0e"


@pytest.fixture
def server():
    running = FaultServer(flatten(script_for(["4"], ["4"]))).start()
    yield running
    running.stop()


@pytest.fixture
def graph():
    return build_sift_graph(retry_policy=FAST_RETRY).compile()


def context_for(server: FaultServer, **kwargs) -> SiftContext:
    return SiftContext(model="openai:test-model", base_url=server.base_url, **{"request_timeout": 2.0, **kwargs})


def test_a_full_run_through_the_openai_client(server, graph):
    result = graph.invoke({"question": QUESTION}, context=context_for(server, max_tokens=64))
    assert result["consensus_round"] == 1 and result["answer"] == "4"
    assert sorted(server.roles()) == ["predict_query_sticker", "predict_sticker", "sticker"]
    assert all(request["max_tokens"] == 64 and request["temperature"] == 0.0 for request in server.requests)
    assert all("top_p" not in request and "max_completion_tokens" not in request for request in server.requests)
    # usage comes from the server's own counts
    sticker_request = server.requests[server.roles().index("sticker")]
    assert result["usage"]["sticker"]["input_tokens"] == len(sticker_request["messages"][-1]["content"].split())


def test_sampling_settings_reach_the_server(server, graph):
    graph.invoke({"question": QUESTION}, context=context_for(server, temperature=0.6, top_p=0.9, max_tokens=99))
    assert {(r["temperature"], r["top_p"], r["max_tokens"]) for r in server.requests} == {(0.6, 0.9, 99)}


def test_the_official_api_gets_the_new_token_limit_name(server):
    from langchain_core.messages import HumanMessage

    model = OpenAICompatibleChatModel(
        model="x", base_url=server.base_url, api_key="k", token_limit_param="max_completion_tokens"
    )
    model.invoke([HumanMessage(sticker_prompt(QUESTION))], max_tokens=12)
    assert server.requests[0]["max_completion_tokens"] == 12 and "max_tokens" not in server.requests[0]


@pytest.mark.parametrize(
    "faults",
    [
        [{"status": 429}],
        [{"status": 500}],
        [{"status": 503}, {"status": 502}],
        [{"hang": 3.0}],
        [{"drop": True}],
        [{"status": 429}, {"drop": True}, {"hang": 3.0}],
    ],
    ids=["429", "500", "503-502", "timeout", "dropped", "mixed"],
)
def test_transient_faults_are_retried(server, graph, faults):
    server.plan["sticker"] = list(faults)
    result = graph.invoke({"question": QUESTION}, context=context_for(server))
    assert result["consensus_round"] == 1
    assert server.count("sticker") == len(faults) + 1
    assert result["usage"]["sticker"]["calls"] == 1  # a failed attempt is not a call that happened


@pytest.mark.parametrize("status", [400, 401, 404])
def test_faults_a_retry_cannot_fix_fail_at_once(server, graph, status):
    server.plan["sticker"] = [{"status": status}]
    with pytest.raises(openai.APIStatusError) as raised:
        graph.invoke({"question": QUESTION}, context=context_for(server))
    assert raised.value.status_code == status
    assert server.count("sticker") == 1


def test_a_fault_that_outlasts_the_retries_is_a_clear_error_and_nothing_is_lost(server, graph):
    server.replies.update(flatten(script_for(["4"], ["3"])))  # round 1 disagrees
    server.plan["forward"] = [{"status": 503}] * 4
    checkpointed = build_sift_graph(retry_policy=FAST_RETRY).compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "faulty"}}
    with pytest.raises(openai.InternalServerError):
        checkpointed.invoke({"question": QUESTION}, config, context=context_for(server))
    assert server.count("forward") == 4
    saved = checkpointed.get_state(config)
    assert len(saved.values["rounds"]) == 1 and saved.next == ("forward_optimize",)

    before = server.count("sticker"), server.count("predict_sticker"), server.count("predict_query_sticker")
    server.replies.update(flatten(script_for(["5"], ["5"])))  # the server recovers
    result = checkpointed.invoke(None, config, context=context_for(server))
    assert result["consensus_round"] == 2
    assert (server.count("sticker"), server.count("predict_sticker"), server.count("predict_query_sticker")) == (
        before[0],
        before[1] + 1,
        before[2] + 1,
    )
    assert result["usage"]["sticker"]["calls"] == 1 and result["usage"]["forward"]["calls"] == 1


def test_refused_connection_is_retried_then_reported():
    graph = build_sift_graph(retry_policy=FAST_RETRY).compile()
    context = SiftContext(model="openai:test-model", base_url="http://127.0.0.1:9/v1", request_timeout=1.0)
    with pytest.raises(openai.APIConnectionError):
        graph.invoke({"question": QUESTION}, context=context)


def test_empty_and_think_only_replies_have_no_answer_and_never_agree(server, graph):
    server.replies["predict_sticker"] = ""
    server.replies["predict_query_sticker"] = "<think>Adding 3 and 2 gives \\boxed{5}"  # cut inside its thinking
    server.replies["direct"] = boxed("5")
    result = graph.invoke({"question": QUESTION}, context=context_for(server))
    first = result["rounds"][0]
    assert first["predict_sticker"]["answer"] is None
    assert first["predict_query_sticker"]["answer"] is None
    assert first["predict_query_sticker"]["reasoning"].startswith("Adding 3 and 2")
    assert result["consensus_round"] is None and result["answer"] == "5"


def test_a_reasoning_model_is_read_from_its_final_part(server, graph):
    server.replies["predict_sticker"] = "<think>3 + 2... maybe \\boxed{6}? no.</think>So the total is \\boxed{5}."
    server.plan["predict_query_sticker"] = [
        {"content": "The total is \\boxed{5}.", "reasoning_content": "Ann had 3, bought 2: \\boxed{7}? no, 5."}
    ]
    result = graph.invoke({"question": QUESTION}, context=context_for(server))
    first = result["rounds"][0]
    assert (
        first["predict_sticker"]["answer"] == "5"
        and first["predict_sticker"]["reasoning"] == "3 + 2... maybe \\boxed{6}? no."
    )
    assert first["predict_query_sticker"]["reasoning"] == "Ann had 3, bought 2: \\boxed{7}? no, 5."
    assert result["answer"] == "5" and result["response"] == "The total is \\boxed{5}."


def test_a_truncated_prediction_is_recorded_and_never_agrees(server, graph):
    server.plan["predict_sticker"] = [{"content": boxed("4"), "finish_reason": "length"}]
    server.replies.update(forward=FORWARD_STICKER, inverse=STICKER)  # a new sticker: new calls in round 2
    result = graph.invoke({"question": QUESTION}, context=context_for(server))
    assert result["rounds"][0]["predict_sticker"]["truncated"] is True
    assert result["rounds"][0]["agreed"] is False and result["consensus_round"] == 2


async def test_both_predictions_are_in_flight_together(server):
    server.plan["predict_sticker"] = [{"hang": 0.3}]
    server.plan["predict_query_sticker"] = [{"hang": 0.3}]
    result = await build_sift_graph().compile().ainvoke({"question": QUESTION}, context=context_for(server))
    assert result["consensus_round"] == 1
    assert server.max_in_flight == 2


async def test_a_batch_runs_with_bounded_requests_in_flight(server):
    for role in ("sticker", "predict_sticker", "predict_query_sticker"):
        server.plan[role] = [{"hang": 0.05}] * 12
    graph = build_sift_graph().compile()
    results = await graph.abatch(
        [{"question": f"{QUESTION} ({n})"} for n in range(6)],
        config={"max_concurrency": 3},
        context=context_for(server),
    )
    assert [r["consensus_round"] for r in results] == [1] * 6
    assert 2 < server.max_in_flight <= 6  # several questions at once, never more than 3 x 2


def lean_and_stock_models(server, **more):
    from langchain_openai import ChatOpenAI

    settings = dict(
        **more,
        model="test-model",
        base_url=server.base_url,
        api_key="no-key",
        max_retries=0,
        max_tokens=32,
        temperature=0.2,
        extra_body={"top_k": 5},
        default_headers={"x-team": "sift"},
    )
    # (the same token-limit name as the stock client, to compare whole bodies; ours
    # always streams, with its usage)
    lean = OpenAICompatibleChatModel(**settings, token_limit_param="max_completion_tokens")
    return lean, ChatOpenAI(**settings, streaming=True, stream_usage=True)


def assert_same_request_and_reply(server, replies) -> None:
    lean_body, stock_body = server.requests
    assert lean_body == stock_body and lean_body["top_k"] == 5 and lean_body["stop"] == ["###"]
    assert server.headers[0]["x-team"] == server.headers[1]["x-team"] == "sift"
    lean, stock = replies
    counts = ("input_tokens", "output_tokens", "total_tokens")
    assert lean.content == stock.content
    assert [lean.usage_metadata[name] for name in counts] == [stock.usage_metadata[name] for name in counts]
    assert lean.response_metadata["finish_reason"] == stock.response_metadata["finish_reason"]


# SIFT's client streams plain chat completions through the SDK's raw `post`; the body,
# extra body fields and extra headers must be exactly what ChatOpenAI would send.
def test_the_lean_request_path_sends_what_the_stock_client_sends(server):
    from langchain_core.messages import HumanMessage

    messages = [HumanMessage(sticker_prompt(QUESTION))]
    replies = [model.invoke(messages, stop=["###"]) for model in lean_and_stock_models(server)]
    assert_same_request_and_reply(server, replies)


async def test_the_lean_request_path_sends_what_the_stock_client_sends_async(server):
    from langchain_core.messages import HumanMessage

    messages = [HumanMessage(sticker_prompt(QUESTION))]
    replies = [await model.ainvoke(messages, stop=["###"]) for model in lean_and_stock_models(server)]
    assert_same_request_and_reply(server, replies)


def test_chat_completion_request_splits_body_and_call_options():
    body, options = chat_completion_request(
        {
            "model": "m",
            "messages": [],
            "extra_body": {"top_k": 5, "model": "served-name"},
            "extra_headers": {"x-a": "1"},
            "extra_query": {"q": "1"},
            "timeout": 3.0,
        }
    )
    # extra_body is merged last, as the SDK merges it into the JSON it sends
    assert body == {"model": "served-name", "messages": [], "top_k": 5}
    assert options == {"headers": {"x-a": "1"}, "params": {"q": "1"}, "timeout": 3.0}
    assert chat_completion_request({"model": "m", "extra_body": None}) == ({"model": "m"}, {})


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 400},
        {"status": 401},
        {"status": 403},
        {"status": 404},
        {"status": 409},
        {"status": 429},
        {"status": 500},
        {"status": 503},
        {"hang": 3.0},
    ],
    ids=["400", "401", "403", "404", "409", "429", "500", "503", "timeout"],
)
def test_lean_path_errors_map_like_the_stock_client(server, fault):
    from langchain_core.messages import HumanMessage

    def raised_by(model) -> BaseException:
        server.plan["sticker"] = [fault]
        with pytest.raises(openai.APIError) as raised:
            model.invoke([HumanMessage(sticker_prompt(QUESTION))])
        return raised.value

    lean, stock = lean_and_stock_models(server, timeout=1.0)
    lean_error, stock_error = raised_by(lean), raised_by(stock)
    assert type(lean_error) is type(stock_error), (lean_error, stock_error)
    assert is_transient_fault(lean_error) == is_transient_fault(stock_error)
    assert str(lean_error) == str(stock_error)


def test_a_prompt_over_the_context_is_a_context_overflow(server):
    """Told by OpenAI's documented error code (the stock client reads the message text for
    a few providers' phrasings, and with this SDK misses OpenAI's own), so it is still a
    bad request, and a LangChain `ContextOverflowError`."""
    from langchain_core.exceptions import ContextOverflowError
    from langchain_core.messages import HumanMessage

    server.plan["sticker"] = [{"status": 400, "code": "context_length_exceeded", "message": "too long"}]
    lean, _ = lean_and_stock_models(server)
    with pytest.raises(ContextOverflowError) as raised:
        lean.invoke([HumanMessage(sticker_prompt(QUESTION))])
    assert isinstance(raised.value, openai.BadRequestError) and str(raised.value) == "Error code: 400 - too long"


def test_a_refused_connection_maps_like_the_stock_client():
    from langchain_core.exceptions import ModelConnectionError
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    settings = dict(model="m", base_url="http://127.0.0.1:9/v1", api_key="no-key", max_retries=0, timeout=1.0)
    raised = []
    for model in (OpenAICompatibleChatModel(**settings), ChatOpenAI(**settings, streaming=True)):
        with pytest.raises(ModelConnectionError) as error:
            model.invoke([HumanMessage("hi")])
        raised.append(error.value)
    lean, stock = raised
    assert type(lean) is type(stock) and isinstance(lean, openai.APIConnectionError) and is_transient_fault(lean)


def test_the_api_key_reaches_the_server_and_nothing_else(server, tmp_path):
    db = tmp_path / "checkpoints.sqlite"
    with SqliteSaver.from_conn_string(str(db)) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        context = context_for(server, api_key=SECRET)
        result = graph.invoke({"question": QUESTION}, {"configurable": {"thread_id": "t"}}, context=context)
        history = list(graph.get_state_history({"configurable": {"thread_id": "t"}}))
    assert all(headers.get("authorization") == f"Bearer {SECRET}" for headers in server.headers)
    assert SECRET not in repr(context) and SECRET not in str(resolve_model("openai:test-model", context.connection))
    assert SECRET not in json.dumps(result) and SECRET not in repr(history)
    raw = db.read_bytes() + b"".join(
        (tmp_path / name).read_bytes() for name in ("checkpoints.sqlite-wal",) if (tmp_path / name).exists()
    )
    assert SECRET.encode() not in raw
    with sqlite3.connect(db) as connection:
        for (table,) in connection.execute("select name from sqlite_master where type='table'").fetchall():
            assert SECRET not in repr(connection.execute(f"select * from {table}").fetchall())

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sift_graph.cli",
            "solve",
            QUESTION,
            "--json",
            "--model",
            "openai:test-model",
            "--base-url",
            server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OPENAI_API_KEY": SECRET, "PATH": "", "SIFT_CHECKPOINTS": str(tmp_path / "cli.sqlite")},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "4"
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    # The CLI stores its run settings with the checkpoints, for --resume: never the key.
    assert SECRET.encode() not in (tmp_path / "cli.sqlite").read_bytes()
    assert server.headers[-1]["authorization"] == f"Bearer {SECRET}"


def test_the_cli_reports_a_lasting_fault_in_one_line(server, tmp_path):
    server.plan["sticker"] = [{"status": 503}] * 10
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sift_graph.cli",
            "solve",
            QUESTION,
            "--model",
            "openai:test-model",
            "--base-url",
            server.base_url,
            "--timeout",
            "2",
            "--checkpoints",
            str(tmp_path / "runs.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.splitlines()[-1]
        == "sift: error: model call failed: the model server answered HTTP 503: injected 503"
    )
    assert "Traceback" not in proc.stderr
    # The run is kept, and the message says how to continue it once the server is back.
    thread = proc.stdout.splitlines()[0].removeprefix("thread: ")
    assert f"sift: resume with: sift solve --resume {thread} --checkpoints {tmp_path / 'runs.sqlite'}" in proc.stderr


def test_openai_itself_needs_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match=r"^api_key: "):
        resolve_model("openai:gpt-4o-mini")


def test_bad_connection_settings_are_named():
    with pytest.raises(ValueError, match=r"^base_url: "):
        SiftContext(base_url="localhost:8000")
    with pytest.raises(ValueError, match=r"^request_timeout: "):
        SiftContext(request_timeout=0)
