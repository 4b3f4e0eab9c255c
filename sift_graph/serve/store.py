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
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

from sift_graph.checkpoints import (
    SqliteFileSaver,
    aopen_checkpointer,
    checkpoint_kind,
    describe_checkpoints,
    sqlite_file,
)


class StoreUnavailable(Exception):
    """The checkpoint store cannot be opened (one line, for a person)."""


class ThreadedSqliteSaver(SqliteFileSaver):
    """`SqliteFileSaver` whose async methods run its sync ones in a worker thread."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Mapping[str, Any]:
        return await asyncio.to_thread(lambda: self.get_delta_channel_history(config=config, channels=channels))


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
