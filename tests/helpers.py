"""Helpers shared by the test modules (fixtures live in conftest.py; the scripted
question, stickers and scripts in `sift_graph.testing`)."""

from __future__ import annotations

import os

import pytest

from sift_graph.testing import ScriptedChatModel, script_for

POSTGRES_URL_ENV = "SIFT_TEST_POSTGRES_URL"

EVERY_STAGE = script_for(["1", "2", "3"], ["4", "5", "6"], direct="9")
"""Every round disagrees: a run passes through every stage and ends in the fallback (answer 9)."""


def postgres_url() -> str:
    """The test PostgreSQL server's URL (scripts/test starts one), else skip the test."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_URL_ENV} (scripts/test does)")
    return url


def broken_model(broken_role: str) -> ScriptedChatModel:
    """The model whose first `broken_role` call fails. The fault takes a moment, as real
    ones do, so that a sibling prediction finishes first: a call still in flight when
    the run stops may be made again on resume (LangGraph cannot save a write once it is
    stopping), and the fake's replies go by call order."""
    return ScriptedChatModel(script=EVERY_STAGE, failures={broken_role: 1}, fault_latency=0.2)


def answer_cli_with(monkeypatch: pytest.MonkeyPatch, model: object) -> None:
    """Make every model spec the `sift` CLI resolves answer with `model`."""
    monkeypatch.setattr("sift_graph.cli.common.resolve_model", lambda spec, connection=None, options=None: model)
