"""The checkpoint store of a server, whose event loop serves every request.

PostgreSQL and the in-memory saver come from `checkpoints.aopen_checkpointer` as they
are (the one has an async driver, the other no I/O). The SQLite saver there works on
the calling thread, which suits one run per process (`sift solve`); in a server it would
hold up every other request during each write, and `langgraph dev` refuses such blocking
calls. Here its work goes to a worker thread: one hop per saver call, same tables and
file, so `sift solve --resume` reads what the server wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver

from sift_graph.checkpoints import (
    SqliteFileSaver,
    aopen_checkpointer,
    checkpoint_kind,
    describe_checkpoints,
    sqlite_file,
)

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The checkpoint store cannot be opened (one line, for a person)."""


class ThreadedSqliteSaver(SqliteFileSaver):
    """`SqliteFileSaver` whose async methods do their work in a worker thread."""

    async def _call(self, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)


@contextlib.asynccontextmanager
async def _threaded_sqlite(setting: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    path = sqlite_file(setting)
    if path != ":memory:":
        await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
    opened = ThreadedSqliteSaver.open(path)
    saver = await asyncio.to_thread(opened.__enter__)
    try:
        yield saver
    finally:
        await asyncio.to_thread(opened.__exit__, None, None, None)


@contextlib.asynccontextmanager
async def open_store(setting: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """A ready saver for `setting`; StoreUnavailable (one line) if it cannot be opened."""
    import psycopg

    opener = _threaded_sqlite if checkpoint_kind(setting) == "sqlite" else aopen_checkpointer
    async with contextlib.AsyncExitStack() as stack:
        try:
            saver = await stack.enter_async_context(opener(setting))
        except (OSError, sqlite3.Error, psycopg.Error) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"cannot open checkpoints {describe_checkpoints(setting)!r}: {reason}") from exc
        yield saver
