"""Shared fixtures: scripted replies per SIFT role and a graph compiled per test."""

from __future__ import annotations

import os

import pytest

from sift_graph import build_sift_graph
from sift_graph.testing import ScriptedChatModel

STICKER = "**Conditions:**\n1. Ann has 3 apples.\n2. Ann buys 2 more apples.\n**Question:** How many apples does Ann have now?"
FORWARD_STICKER = "**Conditions:**\n1. Ann has 3 apples.\n2. Ann buys 2 more apples.\n**Question:** How many apples does Ann have in total?"
INVERSE_STICKER = "**Conditions:**\n1. Ann starts with 3 apples.\n2. Ann gets 2 apples.\n**Question:** How many apples now?"
QUESTION = "Ann has 3 apples and buys 2 more. How many apples does she have?"


def boxed(answer: str) -> str:
    return f"Adding the apples step by step gives the total. \\boxed{{{answer}}}"


def script_for(sticker_answers: list[str], query_answers: list[str], direct: str = "5") -> dict:
    """A script whose k-th round predicts sticker_answers[k] and query_answers[k]."""
    return {
        "sticker": STICKER,
        "forward": FORWARD_STICKER,
        "inverse": INVERSE_STICKER,
        "predict_sticker": [boxed(a) for a in sticker_answers],
        "predict_query_sticker": [boxed(a) for a in query_answers],
        "direct": boxed(direct),
    }


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


POSTGRES_URL_ENV = "SIFT_TEST_POSTGRES_URL"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def checkpoints(request, tmp_path) -> str:
    """A checkpointer setting of each kind; PostgreSQL is a real server on loopback
    (scripts/test starts one and sets $SIFT_TEST_POSTGRES_URL)."""
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return str(tmp_path / "checkpoints.sqlite")
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_URL_ENV} (scripts/test does)")
    return url
