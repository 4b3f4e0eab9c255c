"""Every example runs as written (with the scripted fake standing in for the model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sift_graph import build_sift_graph
from sift_graph.checkpoints import open_checkpointer
from sift_graph.serve.protocol import CONTEXT_HEADER
from sift_graph.testing import script_for

from helpers import sift_serve

pytestmark = pytest.mark.slow  # real processes
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def scripted_spec(tmp_path) -> str:
    script = {**script_for(["4", "5"], ["3", "5"]), "chat": "Hello, reader!"}
    path = tmp_path / "model.json"
    # A little latency, so that a process can be killed while a call is in flight.
    path.write_text(json.dumps({"script": script, "latency": 0.3}), encoding="utf-8")
    return f"scripted:{path}"


def run_example(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_resume_after_crash(scripted_spec):
    out = run_example("resume_after_crash.py", "--model", scripted_spec)
    assert "child killed (exit -9)" in out
    assert "saved: round 1 sticker" in out
    assert "answer: " in out and "resumed | consensus" in out
    # The sticker finished before the kill: it is kept, not generated again. (Whether a
    # round-1 prediction had also been saved depends on the moment of the kill.)
    assert "resumed | sticker (round 1)" not in out and "resumed | sticker (round 2)" in out


def test_stream_progress(scripted_spec):
    out = run_example("stream_progress.py", "--model", scripted_spec)
    assert "done: generate_sticker" in out and "consensus: ['5', '5']" in out


def test_math_agent_routes_math_to_sift(scripted_spec, tmp_path):
    out = run_example("math_agent.py", "--model", scripted_spec, "--checkpoints", str(tmp_path / "agent.sqlite"))
    lines = out.splitlines()
    assert "  routed to: chat" in lines and "chat: Hello, reader!" in lines
    assert "  routed to: sift" in lines and "  (SIFT answer: 5)" in lines
    assert "  [sift] consensus (round 2)" in lines


def test_math_agent_asks_sift_serve_through_chat_openai(scripted_spec, tmp_path):
    runs = str(tmp_path / "served.sqlite")
    with sift_serve("--model", scripted_spec, "--checkpoints", runs, log=tmp_path / "serve.log") as (url, _):
        agent_store = str(tmp_path / "agent.sqlite")
        out = run_example("math_agent.py", "--model", scripted_spec, "--sift-url", url, "--checkpoints", agent_store)
    lines = out.splitlines()
    assert "  routed to: chat" in lines and "chat: Hello, reader!" in lines
    assert "  routed to: sift" in lines and "  (SIFT answer: 5)" in lines
    thread = next(line for line in lines if line.startswith("  (sift serve thread: "))[22:-1]
    # The server kept the run; the earlier turns went along as context for the question.
    # The question is stored once, with the run's input (a delta channel): read through the graph.
    with open_checkpointer(runs) as saver:
        state = build_sift_graph().compile(checkpointer=saver).get_state({"configurable": {"thread_id": thread}})
        question = state.values["question"]
    assert question.startswith(f"{CONTEXT_HEADER}\nUser: Say hello") and "Assistant: Hello, reader!" in question


def test_router_sends_arithmetic_and_quantity_questions_to_sift():
    sys.path.insert(0, str(ROOT / "examples"))
    from math_agent import looks_like_math

    assert looks_like_math("What is 17 * 3?")
    assert looks_like_math("Janet has 16 eggs and eats 3. How many are left?")
    assert looks_like_math("It costs $5 with 20% off")
    assert not looks_like_math("Say hello to the reader in one short sentence.")
    assert not looks_like_math("How many moons does Mars have?")  # no numbers to reason over
