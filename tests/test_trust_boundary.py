"""The trust boundary of every served path (issue 21): a client chooses its run settings
(decoding, rounds) within the deployment's bounds; the model, its server, key, cache and
dtype are the deployment's, and a client that names one is refused, naming the field,
with nothing sent anywhere. And a long-running server's memory is bounded."""

from __future__ import annotations

import json

import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from sift_graph import SiftContext
from sift_graph.context import run_settings
from sift_graph.deployment import DEPLOYMENT_SETTINGS, Deployment, RunLimits, deployment_from_env
from sift_graph.models.specs import Connection, LoadOptions
from sift_graph.serve import ServeSettings, SiftService, create_app
from sift_graph.serve.guard import DeploymentSettingsGuard
from sift_graph.testing import QUESTION, ScriptedChatModel, script_for

from fault_server import FaultServer
from helpers import flatten, scripted_spec, serving, sift_serve

AGREE = script_for(["5"], ["5"])
MESSAGES = [{"role": "user", "content": QUESTION}]
DEPLOYMENT_BODY_FIELDS = ["base_url", "api_key", "cache", "dtype", "request_timeout"]


@pytest.fixture
def listener():
    """A loopback server of the test's own: a client would like the server to call it."""
    server = FaultServer(flatten(AGREE)).start()
    yield server
    server.stop()


# --- the deployment and its bounds -------------------------------------------------


def test_the_environment_gives_the_deployment_and_its_bounds():
    deployment = deployment_from_env(
        {"SIFT_MODEL": "openai:m", "SIFT_BASE_URL": "http://10.0.0.1/v1", "SIFT_MAX_TOKENS_LIMIT": "512"}
    )
    assert (deployment.context.model, deployment.context.base_url) == ("openai:m", "http://10.0.0.1/v1")
    assert deployment.limits == RunLimits(max_tokens=512)
    assert deployment.context.max_tokens == 512  # the default (1024) comes down to the limit
    with pytest.raises(ValueError, match="SIFT_MAX_TOKENS_LIMIT"):
        deployment_from_env({"SIFT_MAX_TOKENS_LIMIT": "lots"})


@pytest.mark.parametrize("name", ["model", "dtype", "base_url", "api_key", "cache", "request_timeout"])
def test_a_deployment_setting_from_a_client_is_refused_naming_it(name):
    with pytest.raises(ValueError, match=f"^{name}: a deployment setting") as raised:
        Deployment().served_context({"max_tokens": 8, name: "x"})
    assert "forward_rounds" in str(raised.value)  # it says what a client may set


def test_run_settings_are_taken_within_bounds():
    deployment = Deployment(
        context=SiftContext(model="openai:m", max_tokens=32), limits=RunLimits(max_tokens=64, max_rounds=2)
    )
    context = deployment.served_context({"max_tokens": 64, "temperature": 0.5, "forward_rounds": 2})
    assert (context.model, context.max_tokens, context.temperature) == ("openai:m", 64, 0.5)
    for over, message in (({"max_tokens": 65}, "^max_tokens: "), ({"forward_rounds": 3}, "^forward_rounds: ")):
        with pytest.raises(ValueError, match=message):
            deployment.served_context(over)
    with pytest.raises(ValueError, match=r"^beam: not a SIFT run setting"):
        deployment.served_context({"beam": 2})


def test_the_served_schema_has_only_the_run_settings():
    fields = set(Deployment().context_schema.__dataclass_fields__)
    assert fields == set(run_settings(SiftContext())) and not fields & DEPLOYMENT_SETTINGS


# --- the HTTP app (sift serve's routes) --------------------------------------------


@pytest.fixture
def served(listener):
    """`sift serve`'s app in process: the deployment's model is the scripted fake."""
    model = ScriptedChatModel(script=AGREE)
    settings = ServeSettings(
        context=SiftContext(model=model, max_tokens=128), checkpoints="memory", limits=RunLimits(max_tokens=256)
    )
    with serving(create_app(SiftService(settings))) as url:
        yield url, model


@pytest.mark.parametrize("name", DEPLOYMENT_BODY_FIELDS)
def test_a_body_naming_a_deployment_setting_is_400_and_nothing_is_sent(served, listener, name):
    url, model = served
    value = listener.base_url if name == "base_url" else "x"
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="sift", messages=MESSAGES, extra_body={name: value})
    error = raised.value.body
    assert error["param"] == name and error["message"].startswith(f"{name}: a deployment setting")
    assert listener.requests == [] and model.calls == []


def test_max_tokens_over_the_limit_is_400_and_decoding_answers_through_the_deployment(served):
    url, model = served
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="max_tokens: this deployment allows at most 256"):
        client.chat.completions.create(model="sift", messages=MESSAGES, max_tokens=257)
    assert model.calls == []
    completion = client.chat.completions.create(model="sift", messages=MESSAGES, max_tokens=200, temperature=0.3)
    assert completion.sift["answer"] == "5"
    assert {(call.kwargs["max_tokens"], call.kwargs["temperature"]) for call in model.calls} == {(200, 0.3)}


# --- the guard on the LangGraph server's own routes --------------------------------


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": json.loads(await request.body())})


@pytest.fixture
def guarded():
    app = Starlette(routes=[Route("/{path:path}", echo, methods=["POST", "PATCH"])])
    app.add_middleware(DeploymentSettingsGuard)
    return TestClient(app)


@pytest.mark.parametrize("name", ["base_url", "api_key", "cache", "model", "dtype"])
@pytest.mark.parametrize("where", ["context", "configurable", "batch"])
def test_the_guard_refuses_a_deployment_setting_in_a_run_or_an_assistant(guarded, name, where):
    settings = {"max_tokens": 9, name: "http://127.0.0.1:9/v1"}
    body = {
        "context": {"assistant_id": "sift", "context": settings},
        "configurable": {"config": {"configurable": settings}},
        "batch": [{"input": {}}, {"context": settings}],
    }[where]
    response = guarded.post("/threads/t/runs/wait", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == name
    assert response.json()["error"]["message"].startswith(f"{name}: a deployment setting")
    assert guarded.patch("/assistants/a", json={"context": settings}).status_code == 400


def test_the_guard_passes_run_settings_on_untouched(guarded):
    body = {"assistant_id": "sift", "context": {"max_tokens": 9, "temperature": 0.2}, "config": {"configurable": {}}}
    response = guarded.post("/runs/wait", json=body)
    assert response.status_code == 200 and response.json() == {"received": body}


# --- bounded memory ----------------------------------------------------------------


def test_memory_checkpoints_keep_their_thread_count_at_the_bound(monkeypatch):
    monkeypatch.setattr("sift_graph.serve.store.MEMORY_THREADS", 50)
    model = ScriptedChatModel(script=AGREE)
    service = SiftService(ServeSettings(context=SiftContext(model=model), checkpoints="memory"))
    with TestClient(create_app(service)) as client:
        threads = []
        for _ in range(2000):
            response = client.post("/v1/chat/completions", json={"model": "sift", "messages": MESSAGES})
            assert response.status_code == 200
            threads.append(response.headers["x-sift-thread-id"])
        saver = service.checkpointer
        assert saver is not None and len(saver.storage) == 50
        assert set(saver.storage) == set(threads[-50:])  # the most recent are kept
        assert {key[0] for key in saver.writes} <= set(threads[-50:])
        assert {key[0] for key in saver.blobs} <= set(threads[-50:])


def test_loaded_models_are_bounded_whatever_a_caller_varies(tmp_path):
    from sift_graph.models import specs

    spec = scripted_spec(tmp_path, "model", AGREE)
    first = specs.resolve_model(spec, Connection(timeout=1.0))
    for timeout in range(2, 40):
        specs.resolve_model(spec, Connection(timeout=float(timeout)), LoadOptions(dtype="float32"))
        specs.resolve_model("openai:m", Connection(base_url="http://127.0.0.1:9/v1", timeout=float(timeout)))
    assert len(specs._loaded) == specs.LOADED_MODELS_KEPT
    again = specs.resolve_model(spec, LoadOptions(dtype="float32"))
    assert again is specs.resolve_model(spec, LoadOptions(dtype="float32"))  # still one load per key
    assert first is not None


def test_open_call_stores_are_bounded(tmp_path):
    from sift_graph import cache

    stores = [cache.call_store(str(tmp_path / f"calls-{index}.sqlite")) for index in range(cache.OPEN_STORES_KEPT + 5)]
    assert len(cache._STORES) <= cache.OPEN_STORES_KEPT
    assert cache.call_store(str(tmp_path / f"calls-{cache.OPEN_STORES_KEPT + 4}.sqlite")) is stores[-1]


async def test_a_file_cache_does_no_sqlite_io_on_the_event_loop(tmp_path, monkeypatch):
    """L8: under `ainvoke`, the file store opens and reads in worker threads."""
    import threading

    from sift_graph import build_sift_graph
    from sift_graph.cache import SqliteCallCache

    loop_thread = threading.get_ident()
    on_loop = []
    for name in ("__init__", "lookup", "update"):
        original = getattr(SqliteCallCache, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            if threading.get_ident() == loop_thread:
                on_loop.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(SqliteCallCache, name, spy)
    model = ScriptedChatModel(script=AGREE)
    context = SiftContext(model=model, cache=str(tmp_path / "calls.sqlite"))
    result = await build_sift_graph().compile().ainvoke({"question": QUESTION}, context=context)
    assert result["answer"] == "5" and on_loop == []


@pytest.mark.slow  # a real `sift serve` process
def test_sift_serve_refuses_deployment_settings_and_caps_max_tokens(tmp_path, listener):
    spec = scripted_spec(tmp_path, "model", AGREE)
    args = ("--model", spec, "--checkpoints", "memory", "--max-tokens", "64", "--max-tokens-limit", "128")
    with sift_serve(*args, log=tmp_path / "serve.log") as (url, _):
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        for name in DEPLOYMENT_BODY_FIELDS:
            with pytest.raises(openai.BadRequestError) as raised:
                client.chat.completions.create(model="sift", messages=MESSAGES, extra_body={name: listener.base_url})
            assert raised.value.body["param"] == name
        with pytest.raises(openai.BadRequestError, match="at most 128"):
            client.chat.completions.create(model="sift", messages=MESSAGES, max_tokens=129)
        completion = client.chat.completions.create(model="sift", messages=MESSAGES, max_tokens=128, temperature=0.2)
        assert completion.sift["answer"] == "5"
    assert listener.requests == []


def test_sift_serve_with_a_default_over_its_limit_is_one_line_exit_2():
    import subprocess
    import sys

    args = [sys.executable, "-m", "sift_graph.cli", "serve", "--max-tokens", "8192", "--port", "1"]
    finished = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "sift: error: max_tokens: this deployment allows at most 4096, got 8192 (--max-tokens-limit raises the limit)"
    ]
