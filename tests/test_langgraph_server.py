"""A real `langgraph dev` server serving graphs/ from langgraph.json, driven with
langgraph-sdk: assistants with their own context, threads, streamed stages, history;
and the OpenAI-compatible routes it mounts as its custom HTTP app (`sift serve`'s),
driven with the official openai client and ChatOpenAI."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import pytest

from sift_graph import SiftContext
from sift_graph.context import run_settings
from sift_graph.deployment import DEFAULT_MAX_TOKENS_LIMIT
from sift_graph.testing import QUESTION, boxed, script_for

from fault_server import FaultServer
from helpers import langgraph_dev, wait_until

pytestmark = pytest.mark.slow  # a real server process
ROOT = Path(__file__).resolve().parent.parent
# Round 1 disagrees, round 2 agrees: the round budget decides how a run ends.
SCRIPT = script_for(["4", "5"], ["3", "5"], direct="7")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The server's log and its OpenAI routes' checkpoint store."""
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def upstream():
    """The deployment's model, for the graphs and the OpenAI routes alike:
    `openai:test-model` on the fault server (agreeing on 5)."""
    replies = {role: reply if isinstance(reply, str) else reply[-1] for role, reply in SCRIPT.items()}
    server = FaultServer(replies).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(folder, upstream):
    """`langgraph dev` on a free loopback port; stopped by its pid at the end. Its OpenAI
    routes are configured from the environment, as in a deployment."""
    env = {
        "SIFT_MODEL": "openai:test-model",
        "SIFT_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": "sk-test-for-the-mounted-routes",
        "SIFT_CHECKPOINTS": str(folder / "openai-runs.sqlite"),
    }
    with langgraph_dev(folder / "server.log", env) as url:
        yield url


def disagree_in_round_1(upstream: FaultServer) -> None:
    """The deployment's model (the fault server) answers the next round's two predictions
    4 and 3, then 5 and 5 as it always does: round 1 disagrees, round 2 agrees."""
    for role in ("predict_sticker", "predict_query_sticker"):
        upstream.plan[role] = [{"content": SCRIPT[role][0]}]


@pytest.fixture
def listener():
    """A loopback server of the test's own, which a client would like the server to call."""
    server = FaultServer({role: replies[-1] for role, replies in SCRIPT.items()}).start()
    yield server
    server.stop()


async def test_both_graphs_are_served_with_only_run_settings_in_their_context(server):
    from langgraph_sdk import get_client

    client = get_client(url=server)
    graphs = {assistant["graph_id"] for assistant in await client.assistants.search(limit=50)}
    assert {"sift", "sift_chat"} <= graphs
    for graph_id in ("sift", "sift_chat"):
        assistant_id = (await client.assistants.search(graph_id=graph_id))[0]["assistant_id"]
        schemas = await client.assistants.get_schemas(assistant_id)
        form = schemas["context_schema"]["properties"]  # what Studio renders
        assert set(form) == set(run_settings(SiftContext()))
        assert form["max_tokens"]["description"] == "new-token limit of every model call"
        assert (form["max_tokens"]["minimum"], form["max_tokens"]["maximum"]) == (1, DEFAULT_MAX_TOKENS_LIMIT)
        assert (form["temperature"]["type"], form["temperature"]["maximum"]) == ("number", 2)
    schemas = await client.assistants.get_schemas((await client.assistants.search(graph_id="sift"))[0]["assistant_id"])
    assert set(schemas["input_schema"]["properties"]) == {"question", "fallback"}  # fallback: optional
    assert schemas["input_schema"]["required"] == ["question"]


async def test_a_run_streams_its_stages_and_keeps_its_history(server, upstream):
    from langgraph_sdk import get_client

    client = get_client(url=server)
    assistant = await client.assistants.create(graph_id="sift", context={"max_tokens": 256}, name="sift-tokens")
    thread = await client.threads.create()
    disagree_in_round_1(upstream)
    stages, final = [], None
    async for part in client.runs.stream(
        thread["thread_id"],
        assistant["assistant_id"],
        input={"question": QUESTION},
        stream_mode=["custom", "values"],
        durability="sync",
    ):
        if part.event == "custom":
            stages.append((part.data.get("round"), part.data["stage"]))
        elif part.event == "values":
            final = part.data
        assert part.event != "error", part.data

    assert final["answer"] == "5" and final["consensus_round"] == 2
    assert stages[0] == (1, "sticker") and stages[-1] == (2, "consensus")
    history = await client.threads.get_history(thread["thread_id"], limit=50)
    steps = [tuple(state["next"]) for state in reversed(history)]
    assert steps[1] == ("generate_sticker",) and steps[-1] == ()
    assert ("forward_optimize",) in steps
    assert history[0]["values"]["answer"] == "5"


async def test_context_is_set_per_assistant_and_per_run(server, upstream):
    from langgraph_sdk import get_client

    client = get_client(url=server)
    # An assistant with no refinement budget: round 1 disagrees, so it falls back.
    frugal = await client.assistants.create(
        graph_id="sift", context={"forward_rounds": 0, "inverse_rounds": 0}, name="frugal"
    )
    thread = await client.threads.create()
    disagree_in_round_1(upstream)
    result = await client.runs.wait(thread["thread_id"], frugal["assistant_id"], input={"question": QUESTION})
    assert result["consensus_round"] is None and result["answer"] == "7" and len(result["rounds"]) == 1

    # The same assistant, with the budget raised for one run.
    thread = await client.threads.create()
    disagree_in_round_1(upstream)
    result = await client.runs.wait(
        thread["thread_id"],
        frugal["assistant_id"],
        input={"question": QUESTION},
        context={"forward_rounds": 1, "inverse_rounds": 0},
    )
    assert result["consensus_round"] == 2


async def test_chat_graph_answers_with_an_ai_message(server):
    from langgraph_sdk import get_client

    client = get_client(url=server)
    assistant = await client.assistants.create(graph_id="sift_chat", name="chat")
    thread = await client.threads.create()
    namespaces = set()
    async for part in client.runs.stream(
        thread["thread_id"],
        assistant["assistant_id"],
        input={"messages": [{"role": "user", "content": QUESTION}]},
        stream_mode="custom",
        stream_subgraphs=True,
    ):
        if part.event.startswith("custom"):
            namespaces.add(part.event)
    state = await client.threads.get_state(thread["thread_id"])
    messages = state["values"]["messages"]
    assert [m["type"] for m in messages] == ["human", "ai"]
    assert messages[1]["response_metadata"]["sift_answer"] == "5"
    assert any("sift" in event for event in namespaces)  # SIFT's stages, from the subgraph


@pytest.mark.parametrize("graph_id", ["sift", "sift_chat"])
def test_a_context_naming_a_deployment_setting_is_refused_and_nothing_is_sent(server, upstream, listener, graph_id):
    import httpx

    before = len(upstream.requests)
    question = {"question": QUESTION} if graph_id == "sift" else {"messages": [{"role": "user", "content": QUESTION}]}
    for setting in (
        {"base_url": listener.base_url, "model": "openai:test-model"},
        {"base_url": listener.base_url},
        {"api_key": "sk-client"},
        {"cache": "/tmp/sift-client-chosen.sqlite"},
        {"model": "openai:gpt-4o"},
        {"dtype": "float32"},
    ):
        named = next(iter(setting))
        run = {"assistant_id": graph_id, "input": question, "context": {"max_tokens": 64, **setting}}
        for path, body in (
            ("/runs/wait", run),
            ("/runs/wait", {**{k: v for k, v in run.items() if k != "context"}, "config": {"configurable": setting}}),
            ("/assistants", {"graph_id": graph_id, "context": setting}),
        ):
            response = httpx.post(f"{server}{path}", json=body, timeout=30)
            assert response.status_code == 400, (path, setting, response.text)
            assert response.json()["error"]["param"] == named
            assert response.json()["error"]["message"].startswith(f"{named}: a deployment setting")
    assert listener.requests == [] and len(upstream.requests) == before


def test_a_run_with_decoding_only_answers_through_the_deployments_model(server, upstream):
    import httpx

    before = len(upstream.requests)
    run = {"assistant_id": "sift", "input": {"question": QUESTION}, "context": {"max_tokens": 77, "temperature": 0.4}}
    response = httpx.post(f"{server}/runs/wait", json=run, timeout=60)
    assert response.status_code == 200 and response.json()["answer"] == "5"
    asked = upstream.requests[before:]
    assert asked and {(r["model"], r["max_tokens"], r["temperature"]) for r in asked} == {("test-model", 77, 0.4)}


def test_the_mounted_routes_refuse_a_deployment_setting_in_a_body(server, listener):
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    for name in ("base_url", "api_key", "cache", "dtype"):
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(
                model="sift", messages=[{"role": "user", "content": QUESTION}], extra_body={name: listener.base_url}
            )
        assert raised.value.body["param"] == name
    assert listener.requests == []


def test_the_openai_routes_are_mounted_beside_the_langgraph_api(server, folder):
    import openai
    from langchain_openai import ChatOpenAI

    from sift_graph.checkpoints import open_checkpointer

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    assert [model.id for model in client.models.list()] == ["sift"]
    messages = [{"role": "user", "content": QUESTION}]
    completion = client.chat.completions.create(model="sift", messages=messages)
    assert completion.sift["answer"] == "5" and completion.sift["consensus_round"] == 1
    chunks = list(client.chat.completions.create(model="sift", messages=messages, stream=True))
    stages = [getattr(chunk.choices[0].delta, "reasoning_content", None) for chunk in chunks if chunk.choices]
    assert stages[1].startswith("[round 1] sticker") and chunks[-1].choices[0].finish_reason == "stop"
    assert ChatOpenAI(model="sift", base_url=f"{server}/v1", api_key="unused").invoke(QUESTION).content == boxed("5")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=messages)

    # Each request's run is in the configured store, where `sift solve --resume` finds it.
    with open_checkpointer(str(folder / "openai-runs.sqlite")) as saver:
        saved = saver.get_tuple({"configurable": {"thread_id": completion.sift["thread_id"]}})
    assert saved is not None and saved.checkpoint["channel_values"]["answer"] == "5"
    # ... and the deployment shows it, read-only, under /view
    with urllib.request.urlopen(f"{server}/view/runs/{completion.sift['thread_id']}", timeout=30) as page:
        assert "Round 1" in page.read().decode()


def test_a_client_that_hangs_up_cancels_its_run_inside_the_langgraph_server(server, upstream):
    import openai

    held = threading.Event()
    for role in ("predict_sticker", "predict_query_sticker"):
        upstream.plan[role] = [{"until": held}]
    before, abandoned = len(upstream.requests), len(upstream.abandoned)
    try:
        client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="sift", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        next(iter(stream))
        wait_until(lambda: len(upstream.requests) == before + 3, "both predictions to be asked")
        stream.close()
        # Through the server's middleware too, the hang-up reaches the run: both calls dropped.
        wait_until(lambda: len(upstream.abandoned) == abandoned + 2, "the upstream calls to be cancelled")
    finally:
        held.set()
