"""Interrupted runs resume to the right answer: Ctrl-C cancels the calls in flight at
once, an interrupt between a step's writes and its checkpoint is never taken for the end
of the run, one process holds a run (or a result set) at a time, and a run's stored
checkpoints grow with its rounds, not with their square."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from sift_graph import SiftContext, build_sift_graph, cli
from sift_graph.checkpoints import RUN_DURABILITY, SqliteFileSaver, open_checkpointer
from sift_graph.evaluation.results import EvalConfig, ResultStore
from sift_graph.locks import run_lock
from sift_graph.state import run_finished
from sift_graph.testing import QUESTION, ScriptedChatModel, script_for

from helpers import (
    EVERY_STAGE,
    answer_cli_with,
    counts,
    finished,
    log_of,
    postgres_url,
    scripted_spec,
    start_sift,
    wait_for_call,
    wait_until,
)

CLEAN_CALLS = {"sticker": 1, "predict_sticker": 3, "predict_query_sticker": 3, "forward": 2, "inverse": 1, "direct": 1}


def clean_result() -> dict:
    graph = build_sift_graph().compile()
    return graph.invoke({"question": QUESTION}, context=SiftContext(model=ScriptedChatModel(script=EVERY_STAGE)))


def saved_channel(store: str, thread: str, channel: str) -> bool:
    """Whether some step of `thread` has saved a write to `channel` in a SQLite store."""
    with sqlite3.connect(store) as connection:
        query = "SELECT 1 FROM writes WHERE thread_id = ? AND channel = ? LIMIT 1"
        return connection.execute(query, (thread, channel)).fetchone() is not None


def without_thread(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "thread_id"}


# --- Ctrl-C in a real process ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_cancels_the_call_in_flight_at_once_and_resume_finishes(tmp_path, presses):
    log, store = tmp_path / "calls.jsonl", str(tmp_path / "runs.sqlite")
    # The held call never answers by itself: only cancelling it can end the process.
    held = scripted_spec(tmp_path, "held", call_log=str(log), hold={"predict_query_sticker": 1})
    doomed = start_sift("solve", QUESTION, "--json", "--checkpoints", store, "--model", held)
    thread = doomed.stderr.readline().strip().removeprefix("thread: ")
    wait_for_call(log, "predict_query_sticker", 1, doomed)
    # The sibling prediction answered at once; wait for its answer to be saved, so the
    # held call is the only one in flight (a finished but unsaved call is made again,
    # and the fake's replies go by call order).
    wait_until(lambda: saved_channel(store, thread, "predict_sticker"), "the sibling prediction to be saved")
    for _ in range(presses):
        doomed.send_signal(signal.SIGINT)
    out, err = doomed.communicate(timeout=60)

    assert doomed.returncode == cli.EXIT_INTERRUPTED, err
    assert out == "" and "Traceback" not in err
    if presses == 1:  # a second press may end the process before it says more
        assert f"sift: resume with: sift solve --resume {thread} --checkpoints {store}" in err.splitlines()
        assert counts(log_of(log), "cancel")["predict_query_sticker"] == 1
    resumed = start_sift(
        "solve", "--resume", thread, "--json", "--checkpoints", store,
        "--model", scripted_spec(tmp_path, "resume", call_log=str(log), resume_from_log=True),
    )  # fmt: skip
    assert without_thread(finished(resumed)) == clean_result()


def test_ctrl_c_in_the_cli_cancels_and_resume_makes_only_the_cancelled_call_again(tmp_path, monkeypatch, capsys):
    model = ScriptedChatModel(script=EVERY_STAGE, hold={"forward": 1})
    model.before_reply = lambda role: os.kill(os.getpid(), signal.SIGINT) if role == "forward" else None
    answer_cli_with(monkeypatch, model)
    store = str(tmp_path / "runs.sqlite")
    assert cli.main(["solve", QUESTION, "--json", "--checkpoints", store]) == cli.EXIT_INTERRUPTED
    thread = capsys.readouterr().err.splitlines()[0].removeprefix("thread: ")
    assert [call.role for call in model.calls if call.outcome == "cancel"] == ["forward"]

    model.before_reply, model.hold = None, {}  # the model answers now
    assert cli.main(["solve", "--resume", thread, "--json", "--checkpoints", store]) == 0
    assert without_thread(json.loads(capsys.readouterr().out)) == clean_result()
    made = counts([{"role": call.role, "event": call.outcome} for call in model.calls], "finish")
    assert made == CLEAN_CALLS


# --- an interrupt between a step's writes and its checkpoint -----------------------------


class CrashAfterWrites(Exception):
    """The process died here: writes saved, the next checkpoint never written."""


class DyingSaver(SqliteFileSaver):
    """A saver whose process dies at its `die_at`-th checkpoint: from then on nothing
    more is written, as when the process is gone."""

    die_at = 0
    puts = 0

    async def aput(self, config, checkpoint, metadata, new_versions):
        self.puts += 1
        if self.puts >= self.die_at:
            raise CrashAfterWrites
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        if self.puts >= self.die_at:
            raise CrashAfterWrites
        await super().aput_writes(config, writes, task_id, task_path)


# A run of every stage writes 13 checkpoints (the input, then one per step); dying at
# each one after the first leaves the finished step's writes saved and its checkpoint not.
LAST_CHECKPOINT = 13


@pytest.mark.parametrize("die_at", range(2, LAST_CHECKPOINT + 1))
def test_a_run_that_died_between_writes_and_checkpoint_is_not_finished_and_resumes(
    tmp_path, monkeypatch, capsys, die_at
):
    store = str(tmp_path / "runs.sqlite")
    config = {"configurable": {"thread_id": f"dies-at-{die_at}"}}
    model = ScriptedChatModel(script=EVERY_STAGE)
    with DyingSaver.open(store) as saver:
        saver.die_at = die_at
        graph = build_sift_graph().compile(checkpointer=saver)
        run = graph.ainvoke({"question": QUESTION}, config, context=SiftContext(model=model), durability=RUN_DURABILITY)
        with pytest.raises(CrashAfterWrites):
            asyncio.run(run)  # as the CLI runs it
    with open_checkpointer(store) as saver:
        saved = build_sift_graph().compile(checkpointer=saver).get_state(config)
    # Only the last step's writes hold the answer: then the run is done, checkpoint or not.
    assert run_finished(saved.values) == (die_at == LAST_CHECKPOINT)
    assert saved.next == ()  # what the CLI used to read as "finished"

    answer_cli_with(monkeypatch, model)
    assert cli.main(["solve", "--resume", config["configurable"]["thread_id"], "--json", "--checkpoints", store]) == 0
    out, err = capsys.readouterr()
    assert ("run already finished" in err) == (die_at == LAST_CHECKPOINT)
    assert without_thread(json.loads(out)) == clean_result()
    assert model.call_counts() == CLEAN_CALLS  # no finished call made twice


# --- one process per run, one per result set ---------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_run_held_by_another_process_is_refused(tmp_path, monkeypatch, capsys, kind):
    store = str(tmp_path / "runs.sqlite") if kind == "sqlite" else postgres_url()
    model = ScriptedChatModel(script=script_for(["4"], ["4"]))
    answer_cli_with(monkeypatch, model)
    assert cli.main(["solve", QUESTION, "--json", "--checkpoints", store]) == 0
    thread = json.loads(capsys.readouterr().out)["thread_id"]

    with run_lock(store, thread):  # another holder of the run (its own lock file / session)
        assert cli.main(["solve", "--resume", thread, "--checkpoints", store]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"sift: error: run {thread} is already being resumed by pid {os.getpid()}"
    assert len(model.calls) == 3  # nothing was run twice
    with run_lock(store, thread):  # released: it can be held again
        pass


@pytest.mark.slow
def test_two_processes_resuming_one_run_make_no_call_twice(tmp_path):
    log, store = tmp_path / "calls.jsonl", str(tmp_path / "runs.sqlite")
    first = start_sift(
        "solve", QUESTION, "--json", "--checkpoints", store,
        "--model", scripted_spec(tmp_path, "held", call_log=str(log), hold={"forward": 1}),
    )  # fmt: skip
    thread = first.stderr.readline().strip().removeprefix("thread: ")
    wait_for_call(log, "forward", 1, first)
    second = start_sift("solve", "--resume", thread, "--checkpoints", store, "--model", scripted_spec(tmp_path, "s"))
    _, err = second.communicate(timeout=60)
    first.kill()
    first.wait()
    assert second.returncode == cli.EXIT_USAGE
    assert err.splitlines()[-1] == f"sift: error: run {thread} is already being resumed by pid {first.pid}"


def test_a_result_set_held_by_another_process_is_refused(tmp_path, monkeypatch, capsys):
    sample = Path(__file__).parent / "data" / "gsm8k_sample.jsonl"
    out = tmp_path / "runs"
    model = ScriptedChatModel(script=script_for(["18"], ["18"], direct="3"))
    monkeypatch.setattr("sift_graph.cli.evaluate.load_model_quietly", lambda context: model)
    argv = ["eval", "--dataset", str(sample), "--limit", "2", "--model", "default", "--out", str(out)]
    assert cli.main(argv) == 0
    capsys.readouterr()
    # The two questions' scripted stickers are the same text, so their sticker-only calls are
    # one call: made once or twice by timing (the call cache serves whichever comes second).
    made = len(model.calls)
    assert 7 <= made <= 2 * 4
    store = ResultStore(out, "gsm8k_sample", EvalConfig.from_context(SiftContext()))

    with store.held():  # another process writing the same result set
        assert cli.main([*argv[:3], "--limit", "3", *argv[5:]]) == cli.EXIT_USAGE
    expected = f"sift: error: results {store.path} are being written by pid {os.getpid()}"
    assert capsys.readouterr().err.strip() == expected
    assert len(model.calls) == made  # the refused run made no call


# --- stored runs grow linearly --------------------------------------------------------------


def test_a_runs_checkpoints_grow_linearly_with_its_rounds(tmp_path):
    def stored_bytes(rounds: int) -> int:
        script = script_for(["1"], ["2"])  # never agrees
        script["predict_sticker"] = ["many words " * 400 + "\\boxed{1}"]
        folder = tmp_path / f"r{rounds}"
        folder.mkdir()
        with open_checkpointer(str(folder / "c.sqlite")) as saver:
            context = SiftContext(model=ScriptedChatModel(script=script), forward_rounds=rounds, inverse_rounds=0)
            build_sift_graph().compile(checkpointer=saver).invoke(
                {"question": QUESTION}, {"configurable": {"thread_id": "t"}}, context=context, durability=RUN_DURABILITY
            )
        return sum(path.stat().st_size for path in folder.iterdir())

    small, medium, large = stored_bytes(4), stored_bytes(8), stored_bytes(16)
    # Linear: 8 more rounds cost about twice what 4 more did (quadratic: about four times).
    assert large - medium < 2.6 * (medium - small)
