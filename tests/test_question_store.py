"""The question is stored once per run, not once per checkpoint; a question that cannot
be stored (too long, a lone surrogate) fails the run before any model call; and a run has
one lock per store file, whichever path names it, which a served run takes too."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from sift_graph import SiftContext
from sift_graph.checkpoints import open_checkpointer
from sift_graph.graph import build_sift_graph
from sift_graph.locks import LockHeld, run_lock
from sift_graph.serve import ServeSettings, SiftService
from sift_graph.serve.errors import RunCancelled
from sift_graph.serve.service import Run
from sift_graph.state import MAX_QUESTION_CHARS
from sift_graph.testing import QUESTION, ScriptedChatModel

from helpers import EVERY_STAGE


def stored_bytes(path) -> int:
    """Bytes of every checkpoint and write the store holds."""
    with sqlite3.connect(path) as connection:
        (checkpoints,) = connection.execute("SELECT sum(length(checkpoint)) FROM checkpoints").fetchone()
        (writes,) = connection.execute("SELECT sum(length(value)) FROM writes").fetchone()
    return int(checkpoints) + int(writes)


def run_through_every_stage(path, question: str) -> int:
    """Run a question through every round (13 checkpoints) into a fresh store: its size."""
    model = ScriptedChatModel(script=EVERY_STAGE)
    with open_checkpointer(str(path)) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        output = graph.invoke(
            {"question": question}, {"configurable": {"thread_id": "t"}}, context=SiftContext(model=model)
        )
        assert output["answer"] == "9"  # the fallback: every round ran
        assert graph.get_state({"configurable": {"thread_id": "t"}}).values["question"] == question
    return stored_bytes(path)


def test_the_store_grows_once_with_the_question_not_per_step(tmp_path):
    long_question = QUESTION + " " + "x" * 50_000
    short = run_through_every_stage(tmp_path / "short.sqlite", QUESTION)
    long = run_through_every_stage(tmp_path / "long.sqlite", long_question)
    grown = long - short
    # The input's checkpoint and its write hold it: twice, not once per checkpoint (13x before).
    assert grown < 3 * len(long_question), f"{grown} bytes more for {len(long_question)} more characters"


def test_a_resumed_run_reads_the_question_it_stored(tmp_path):
    path = tmp_path / "runs.sqlite"
    run_through_every_stage(path, QUESTION)
    with open_checkpointer(str(path)) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        history = list(graph.get_state_history({"configurable": {"thread_id": "t"}}))
    middle = [snapshot for snapshot in history if snapshot.metadata and snapshot.metadata["step"] > 0]
    assert middle and all(snapshot.values["question"] == QUESTION for snapshot in middle)


@pytest.mark.parametrize(
    ("question", "reason"),
    [("How many? \ud800", "lone surrogate"), ("a" * (MAX_QUESTION_CHARS + 1), str(MAX_QUESTION_CHARS))],
)
def test_a_question_that_cannot_be_stored_fails_before_any_call(question, reason):
    model = ScriptedChatModel(script=EVERY_STAGE)
    with open_checkpointer("memory") as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        with pytest.raises(ValueError, match=f"^question: .*{reason}"):
            graph.invoke({"question": question}, {"configurable": {"thread_id": "t"}}, context=SiftContext(model=model))
    assert model.calls == []


def test_a_symlinked_store_shares_its_runs_locks(tmp_path):
    run_through_every_stage(tmp_path / "runs.sqlite", QUESTION)
    (tmp_path / "link.sqlite").symlink_to(tmp_path / "runs.sqlite")
    with (
        run_lock(str(tmp_path / "runs.sqlite"), "t"),
        pytest.raises(LockHeld),
        run_lock(str(tmp_path / "link.sqlite"), "t"),
    ):
        pass


async def test_a_served_run_holds_its_lock(tmp_path):
    store = str(tmp_path / "runs.sqlite")
    model = ScriptedChatModel(script=EVERY_STAGE, latency=0.2)
    service = SiftService(ServeSettings(context=SiftContext(model=model), checkpoints=store, retry_policy=None))
    async with service.opened():
        run = service.start(QUESTION, SiftContext(model=model))
        await run.next()  # the first stage is in: the run is going
        with pytest.raises(LockHeld), run_lock(store, run.thread_id):  # what `sift solve --resume` takes
            pass
        run.cancel()
        await asyncio.gather(run.task, return_exceptions=True)
    with run_lock(store, run.thread_id):  # freed with the run
        pass


class SlowLock:
    """A lock that takes until `free` is set, and says whether it was released."""

    def __init__(self) -> None:
        self.free, self.taken, self.released = threading.Event(), threading.Event(), False

    def __enter__(self) -> None:
        self.taken.set()
        self.free.wait(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.released = True


async def test_a_run_cancelled_while_taking_its_lock_frees_it_once_taken():
    lock = SlowLock()

    async def never_used():
        raise AssertionError("the run must not start")
        yield

    run = Run("t", never_used(), lock)
    await asyncio.to_thread(lock.taken.wait, 30)
    run.cancel()  # the client hung up while the worker waits for the lock
    lock.free.set()
    with pytest.raises(RunCancelled):
        await run.next()
    await asyncio.gather(run.task, return_exceptions=True)
    assert lock.released
