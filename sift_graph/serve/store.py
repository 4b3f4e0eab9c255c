"""The checkpoint store of a server, whose event loop serves every request.

PostgreSQL comes from `checkpoints.aopen_checkpointer` as it is (an async driver). The
in-memory saver is bounded: a server runs for weeks, so it keeps the last
`MEMORY_THREADS` threads (by last write) and forgets older ones (`BoundedMemorySaver`).
SQLite is LangGraph's own `AsyncSqliteSaver` (`checkpoints.aopen_sqlite_saver`), as on
LangGraph's own server stacks: its statements run in aiosqlite's worker thread, so no
request waits on another's write (the in-place saver of `sift solve` would hold up every
request during each write, and `langgraph dev` refuses such blocking calls). Same tables
and file, so `sift solve --resume` reads what the server wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.memory import InMemorySaver

from sift_graph.checkpoints import (
    aopen_checkpointer,
    aopen_sqlite_saver,
    checkpoint_kind,
    describe_checkpoints,
    sqlite_file,
)
from sift_graph.sqlite_files import with_folder

MEMORY_THREADS = 1000
"""Threads a server's in-memory checkpoints keep (`--checkpoints memory`): the most
recently written; an older one is forgotten (use SQLite or PostgreSQL to keep them all)."""


class StoreUnavailable(Exception):
    """The checkpoint store cannot be opened (one line, for a person)."""


class BoundedMemorySaver(InMemorySaver):
    """LangGraph's in-memory saver keeping the `max_threads` most recently written
    threads: a new thread's first checkpoint deletes the least recently written one."""

    def __init__(self, max_threads: int = MEMORY_THREADS) -> None:
        super().__init__()
        self.max_threads = max_threads
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_lock = threading.Lock()

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        saved = super().put(config, checkpoint, metadata, new_versions)
        self._touch(str(config["configurable"]["thread_id"]))
        return saved

    def _touch(self, thread_id: str) -> None:
        with self._recent_lock:
            self._recent[thread_id] = None
            self._recent.move_to_end(thread_id)
            forgotten = [self._recent.popitem(last=False)[0] for _ in range(len(self._recent) - self.max_threads)]
        for old in forgotten:
            self.delete_thread(old)


@contextlib.asynccontextmanager
async def _bounded_memory(setting: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    yield BoundedMemorySaver(MEMORY_THREADS)  # read at open: a test may lower it


@contextlib.asynccontextmanager
async def _async_sqlite(setting: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    path = await asyncio.to_thread(with_folder, sqlite_file(setting))
    async with aopen_sqlite_saver(path) as saver:
        yield saver


@contextlib.asynccontextmanager
async def open_store(setting: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """A ready saver for `setting`; StoreUnavailable (one line) if it cannot be opened."""
    import psycopg

    openers = {"sqlite": _async_sqlite, "memory": _bounded_memory}
    opener = openers.get(checkpoint_kind(setting), aopen_checkpointer)
    async with contextlib.AsyncExitStack() as stack:
        try:
            saver = await stack.enter_async_context(opener(setting))
        except (OSError, sqlite3.Error, psycopg.Error) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"cannot open checkpoints {describe_checkpoints(setting)!r}: {reason}") from exc
        yield saver
