"""Shared fixtures: a graph compiled per test, scripted models, a checkpointer setting
of each kind, and a real OpenAI-compatible server. Shared helpers are in helpers.py; the
scripted question, stickers and scripts in `sift_graph.testing`."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest

from sift_graph import build_sift_graph
from sift_graph.testing import ScriptedChatModel, script_for

from helpers import free_port, postgres_url


@pytest.fixture(autouse=True)
def stores_in_tmp(tmp_path, monkeypatch):
    """Every test keeps its checkpoints, and so `sift eval`'s call cache beside them, in a
    folder of its own: no test sees what another (or an earlier pytest run) stored."""
    monkeypatch.setenv("SIFT_CHECKPOINTS", str(tmp_path / "stores" / "checkpoints.sqlite"))


@pytest.fixture
def graph():
    """A fresh compiled graph per test (no checkpointer)."""
    return build_sift_graph().compile()


@pytest.fixture
def scripted():
    """Factory for a scripted model: scripted(sticker_answers, query_answers, direct=...)."""

    def make(sticker_answers, query_answers, direct="5", **kwargs) -> ScriptedChatModel:
        return ScriptedChatModel(script=script_for(sticker_answers, query_answers, direct), **kwargs)

    return make


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def checkpoints(request, tmp_path) -> str:
    """A checkpointer setting of each kind; PostgreSQL is a real server on loopback
    (scripts/test starts one and sets $SIFT_TEST_POSTGRES_URL)."""
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return str(tmp_path / "checkpoints.sqlite")
    return postgres_url()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """A real OpenAI-compatible server on loopback: llama-cpp-python's, serving the
    embedded SmolLM2 GGUF as model `smollm2`. Yields its base URL (.../v1)."""
    from sift_graph.models import default_model_path  # imports transformers: only when used

    port = free_port()
    # The server logs a lot: to a file, since an unread pipe would fill and stall it.
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--model_alias",
            "smollm2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"llama_cpp.server did not start: {log_path.read_text()[-2000:]}") from None
            time.sleep(0.5)
    yield base_url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
