"""kill -9 in the middle of a round, then `sift solve --resume`: the run ends as a clean
run does, and no model call that had finished before the kill is made again.

Each run is a real `sift` process using the scripted fake from a JSON file. The fake logs
every call's start and finish (fsynced) and can hang on a chosen call, which is where
the process is killed.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from sift_graph import build_sift_graph
from sift_graph.checkpoints import open_checkpointer
from sift_graph.testing import QUESTION

from helpers import (
    counts,
    finished,
    log_of,
    postgres_url,
    scripted_spec,
    start_sift,
    unsaved_tasks,
    wait_for_call,
    wait_until,
)

pytestmark = pytest.mark.slow  # real processes: about 10 s a kill point

# Where the process is killed: (role, its call number). One point in every round.
KILL_POINTS = [
    pytest.param("predict_query_sticker", 1, id="round-1-prediction"),
    pytest.param("forward", 1, id="round-2-forward"),
    pytest.param("predict_sticker", 2, id="round-2-prediction"),
    pytest.param("inverse", 1, id="round-3-inverse"),
    pytest.param("forward", 2, id="round-3-forward"),
    pytest.param("predict_query_sticker", 3, id="round-3-prediction"),
    pytest.param("direct", 1, id="fallback"),
]


def sift(*args: str, checkpoints: Path | str) -> subprocess.Popen[str]:
    return start_sift("solve", *args, "--json", "--checkpoints", str(checkpoints))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[dict, Counter]:
    folder = tmp_path_factory.mktemp("clean")
    log = folder / "calls.jsonl"
    model = scripted_spec(folder, "clean", call_log=str(log))
    result = finished(sift(QUESTION, "--model", model, checkpoints=folder / "runs.sqlite"))
    return result, counts(log_of(log), "finish")


@pytest.mark.parametrize(("role", "call"), KILL_POINTS)
def test_kill_9_mid_round_then_resume_matches_a_clean_run(tmp_path, clean_run, role, call):
    kill_and_resume(tmp_path, clean_run, role, call, checkpoints=tmp_path / "runs.sqlite")


def test_kill_9_then_resume_on_postgresql(tmp_path, clean_run):
    """The same on a real PostgreSQL server: a worker dies, another process resumes."""
    kill_and_resume(tmp_path, clean_run, "predict_sticker", 2, checkpoints=postgres_url())


def kill_and_resume(tmp_path: Path, clean_run: tuple, role: str, call: int, checkpoints: Path | str) -> None:
    clean_result, clean_calls = clean_run
    log = tmp_path / "calls.jsonl"

    doomed = sift(
        QUESTION,
        "--model",
        scripted_spec(tmp_path, "hang", call_log=str(log), hold={role: call}),
        checkpoints=checkpoints,
    )
    thread = doomed.stderr.readline().strip().removeprefix("thread: ")
    wait_for_call(log, role, call, doomed)
    # Let a sibling prediction reach the checkpoint first: the held call's task is then the
    # only one of its step whose writes are not saved (read from the store, as a resume would).
    with open_checkpointer(str(checkpoints)) as saver:
        graph, config = build_sift_graph().compile(checkpointer=saver), {"configurable": {"thread_id": thread}}
        wait_until(lambda: unsaved_tasks(graph.get_state(config)) == 1, "the held call to be the only unsaved task")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    before_kill = log_of(log)
    finished_before, started_before = counts(before_kill, "finish"), counts(before_kill, "start")
    in_flight = started_before - finished_before
    assert in_flight[role] == 1

    resume_model = scripted_spec(tmp_path, "resume", call_log=str(log), resume_from_log=True)
    result = finished(sift("--resume", thread, "--model", resume_model, checkpoints=checkpoints))

    assert {k: v for k, v in result.items() if k != "thread_id"} == {
        k: v for k, v in clean_result.items() if k != "thread_id"
    }
    after_resume = counts(log_of(log)[len(before_kill) :], "start")
    # Every call finished before the kill is kept: the resumed process makes exactly the
    # calls a clean run had left, the ones in flight at the kill among them.
    assert finished_before + after_resume == clean_calls
    assert in_flight <= after_resume
