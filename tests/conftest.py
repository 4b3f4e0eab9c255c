"""Shared fixtures: a graph compiled per test, scripted models, and a checkpointer
setting of each kind. Shared helpers are in helpers.py; the scripted question,
stickers and scripts in `sift_graph.testing`."""

from __future__ import annotations

import pytest

from sift_graph import build_sift_graph
from sift_graph.testing import ScriptedChatModel, script_for

from helpers import postgres_url


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
