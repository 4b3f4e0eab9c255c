"""Runs in a checkpoint store, read-only: the threads, a run's rounds, and its
checkpoint history (LangGraph's state history: step by step, what each node wrote).

`open_run_store` opens a `--checkpoints` setting without writing to it: a SQLite file
read-only through LangGraph's `AsyncSqliteSaver` (it must exist and be a SIFT store; the
page's event loop never waits on the disk), PostgreSQL through the same opener as
`sift solve`, memory as an empty store. A page names a run only by its thread id,
checked against THREAD_ID before it reaches the store."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from sift_graph.checkpoints import (
    aopen_checkpointer,
    aopen_sqlite_saver,
    checkpoint_kind,
    describe_checkpoints,
    sqlite_file,
)
from sift_graph.evaluation.records import round_detail
from sift_graph.graph import build_sift_graph
from sift_graph.runs import thread_config
from sift_graph.state import run_finished

THREAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_THREADS = 200
MAX_CHECKPOINTS_SCANNED = 5000
MAX_HISTORY = 300
CONSENSUS_NODE = "check_consensus"
_WRITE_PREVIEW = 400


class RunStoreUnavailable(Exception):
    """The checkpoint store cannot be opened (one line, for a person)."""


class StoreReadError(Exception):
    """The open store could not be read (a file replaced or torn, a database gone)."""


@contextlib.contextmanager
def reading(what: str) -> Iterator[None]:
    """Store errors while reading `what`, as one StoreReadError line."""
    import psycopg

    try:
        yield
    except (sqlite3.Error, psycopg.Error, OSError) as exc:
        raise StoreReadError(f"cannot read {what} from the checkpoint store: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.asynccontextmanager
async def _read_only_sqlite(setting: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    path = sqlite_file(setting)
    if path == ":memory:" or not Path(path).is_file():
        raise RunStoreUnavailable(f"cannot open checkpoints {setting!r}: no such file")
    try:
        async with aopen_sqlite_saver(path, read_only=True) as saver:
            yield saver
    except sqlite3.Error as exc:
        raise RunStoreUnavailable(f"cannot open checkpoints {setting!r}: {_first_line(exc)}") from exc


@contextlib.asynccontextmanager
async def open_run_store(setting: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """A saver to read `setting`'s runs; RunStoreUnavailable (one line) if it cannot open."""
    import psycopg

    kind = checkpoint_kind(setting)
    if kind == "memory":
        yield InMemorySaver()
    elif kind == "sqlite":
        async with _read_only_sqlite(setting) as saver:
            yield saver
    else:
        async with contextlib.AsyncExitStack() as stack:
            try:
                opened = await stack.enter_async_context(aopen_checkpointer(setting))
            except (OSError, psycopg.Error) as exc:
                where = describe_checkpoints(setting)
                raise RunStoreUnavailable(f"cannot open checkpoints {where!r}: {_first_line(exc)}") from exc
            yield opened


def reader_graph(saver: BaseCheckpointSaver[str]) -> Pregel[Any, Any, Any, Any]:
    """The SIFT graph over `saver`, to read state (it is never run here)."""
    return build_sift_graph().compile(checkpointer=saver)


def valid_thread_id(thread_id: str) -> bool:
    return THREAD_ID.fullmatch(thread_id) is not None


async def threads(saver: BaseCheckpointSaver[str]) -> list[dict[str, Any]]:
    """The newest threads first (at most MAX_THREADS), each with its latest step."""
    found: dict[str, dict[str, Any]] = {}
    scanned = 0
    with reading("the threads"):
        async for item in saver.alist(None):
            scanned += 1
            configurable = item.config["configurable"]
            thread, namespace = configurable.get("thread_id"), configurable.get("checkpoint_ns", "")
            if thread is not None and not namespace and str(thread) not in found:
                step = (item.metadata or {}).get("step")
                found[str(thread)] = {"thread_id": str(thread), "updated": item.checkpoint["ts"], "step": step}
            if len(found) >= MAX_THREADS or scanned >= MAX_CHECKPOINTS_SCANNED:
                break
    return sorted(found.values(), key=lambda thread: thread["updated"], reverse=True)


def preview(value: Any) -> str:
    """A node's write, as short text."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= _WRITE_PREVIEW else text[:_WRITE_PREVIEW] + " …"


async def run_page(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> dict[str, Any] | None:
    """A run's question, rounds (as `round_detail` keeps them, with their calls), answer
    and state; None if the store has no such thread."""
    with reading(f"thread {thread_id!r}"):
        snapshot = await graph.aget_state(thread_config(thread_id))
    if not snapshot.created_at:
        return None
    values = snapshot.values or {}
    times = round_times(await history(graph, thread_id))
    rounds = [
        {**round_detail(record), "usage": record.get("usage"), "times": times[index] if index < len(times) else []}
        for index, record in enumerate(values.get("rounds") or [])
    ]
    return {
        "thread_id": thread_id,
        "question": values.get("question") or "",
        "rounds": rounds,
        "answer": values.get("answer"),
        "consensus_round": values.get("consensus_round"),
        "finished": run_finished(values),
        "next": list(snapshot.next),
        "checkpoint_id": snapshot.config["configurable"].get("checkpoint_id"),
        "updated": snapshot.created_at,
    }


async def latest_checkpoint(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> str | None:
    """The id of the run's newest checkpoint: what a live page polls for."""
    with reading(f"thread {thread_id!r}"):
        snapshot = await graph.aget_state(thread_config(thread_id))
    return snapshot.config.get("configurable", {}).get("checkpoint_id") if snapshot.created_at else None


async def history(graph: Pregel[Any, Any, Any, Any], thread_id: str) -> list[dict[str, Any]]:
    """The run's checkpoints, oldest first (at most MAX_HISTORY, the newest): per step,
    the nodes that ran from it and what each wrote."""
    steps = []
    with reading(f"the history of thread {thread_id!r}"):
        async for snapshot in graph.aget_state_history(thread_config(thread_id), limit=MAX_HISTORY):
            steps.append(history_step(snapshot))
    steps.reverse()
    for earlier, later in pairwise(steps):
        later["seconds"] = seconds_between(earlier["created_at"], later["created_at"])
    return steps


def round_times(steps: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Per round, the nodes that ran and how long each one's step took (from the history,
    oldest first; the step that ran a node ends at the next checkpoint). A round ends
    with its consensus check. Nothing when the history is cut at MAX_HISTORY."""
    if len(steps) >= MAX_HISTORY:
        return []
    rounds: list[list[dict[str, Any]]] = [[]]
    for step, following in pairwise(steps):
        for task in step["tasks"]:
            if task["name"].startswith("__"):  # LangGraph's own input step
                continue
            rounds[-1].append({"node": task["name"], "seconds": following["seconds"]})
            if task["name"] == CONSENSUS_NODE:
                rounds.append([])
    return rounds[:-1]


def seconds_between(earlier: str | None, later: str | None) -> float | None:
    """Seconds from one checkpoint's time stamp to the next's: how long the step took."""
    if not earlier or not later:
        return None
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def history_step(snapshot: StateSnapshot) -> dict[str, Any]:
    """One checkpoint: its step, what made it, and each node run from it with its writes."""
    metadata = snapshot.metadata or {}
    return {
        "step": metadata.get("step"),
        "source": metadata.get("source"),
        "created_at": snapshot.created_at,
        "seconds": None,
        "next": list(snapshot.next),
        "tasks": [
            {
                "name": task.name,
                "error": task.error,
                "writes": [(key, preview(value)) for key, value in task.result.items()]
                if isinstance(task.result, dict)
                else [],
            }
            for task in snapshot.tasks
        ],
    }
