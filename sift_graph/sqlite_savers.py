"""SIFT's SQLite checkpoint stores: LangGraph's SQLite savers on one file, opened the one
way every SIFT store is (another program's database refused before anything is written,
WAL, commits without an fsync), and :class:`SqliteFileSaver` for `ainvoke` in one process.
`checkpoints` picks among them from a setting; everything here is public there too."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.sqlite import SqliteSaver

from sift_graph.sqlite_files import other_tables, table_names

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver


# The savers keep SQLite in WAL mode. There, synchronous=NORMAL makes a commit durable
# when it returns as far as the process is concerned (a killed or crashed run loses no
# finished step) and skips the fsync that FULL, SQLite's default, does on every commit
# (3 ms on a plain disk: more than the rest of a step). Only an OS crash or power cut
# can roll back the last few steps, never corrupt the file; a resumed run redoes them.
_SQLITE_SYNCHRONOUS = "PRAGMA synchronous=NORMAL"
# What still fsyncs under NORMAL is the WAL checkpoint (the log copied into the database),
# done by the commit that takes the log past the threshold. At SQLite's default, 1000
# pages (4 MB), a cascade question's 28 commits (~120 pages) reach it every 8 questions:
# a stall of a few ms each time, 0.05 ms per model call measured on the async path
# (0.54 -> 0.49 over the LangGraph floor, five interleaved runs). 10,000 pages does it
# ten times less often; the log (up to 40 MB) is removed when the last connection closes.
_SQLITE_CHECKPOINT_EVERY = "PRAGMA wal_autocheckpoint=10000"


# The saver's tables and the columns it reads (LangGraph's SqliteSaver schema).
_SAVER_COLUMNS = {
    "checkpoints": {"thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "checkpoint", "metadata"},
    "writes": {"thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx", "channel", "value"},
}


def foreign_store_problem(connection: sqlite3.Connection) -> str | None:
    """Why a SQLite database belongs to something else (None when it is empty or ours):
    adding our tables to another program's database, or failing mid-run on its tables,
    would both be worse than refusing it up front."""
    tables = table_names(connection)
    if not tables:
        return None
    if not tables & set(_SAVER_COLUMNS):
        return other_tables(tables)
    for table, needed in _SAVER_COLUMNS.items():
        columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if columns and not needed <= columns:
            return f"its {table!r} table lacks {', '.join(sorted(needed - columns))}"
    return None


S = TypeVar("S", bound=SqliteSaver)


def _read_only_uri(path: str) -> str:
    """`path` opened read-only: fails on a missing file instead of creating it."""
    return f"{Path(path).resolve().as_uri()}?mode=ro"


def _connect(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to a checkpoint file, refused (sqlite3.DatabaseError) before anything
    is written when the file is another program's database; a writer's commits skip the
    fsync and its WAL checkpoints are rarer (settings of each connection, not of the file)."""
    if read_only:
        connection = sqlite3.connect(_read_only_uri(path), uri=True, check_same_thread=False)
    else:
        # autocommit off (Python's default): the saver commits each write itself
        connection = sqlite3.connect(path, check_same_thread=False)
    try:
        if problem := foreign_store_problem(connection):
            raise sqlite3.DatabaseError(f"not a SIFT checkpoint store: {problem}")
        if not read_only:
            connection.execute(_SQLITE_SYNCHRONOUS)
            connection.execute(_SQLITE_CHECKPOINT_EVERY)
    except BaseException:
        connection.close()
        raise
    return connection


@contextmanager
def open_sqlite_saver(path: str, saver_class: type[S]) -> Iterator[S]:
    """`saver_class` (LangGraph's `SqliteSaver`, or :class:`SqliteFileSaver`) on `path`:
    another program's database refused, tables created, commits without the fsync;
    closed on exit."""
    saver = saver_class(_connect(path))
    try:
        saver.setup()
        yield saver
    finally:
        # Under the saver's lock: a write a cancelled run left going in a worker thread
        # ends before the connection closes under it, which crashes.
        with saver.lock:
            saver.conn.close()


@asynccontextmanager
async def aopen_sqlite_saver(path: str, *, read_only: bool = False) -> AsyncIterator[AsyncSqliteSaver]:
    """LangGraph's `AsyncSqliteSaver` on `path`, opened as :func:`open_sqlite_saver` opens
    its saver (`read_only`: the file must exist, and nothing is written to it).

    Every statement goes through aiosqlite's worker thread, so the event loop never waits
    on the disk: what a server needs. For one run per process :class:`SqliteFileSaver`
    is faster."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    # Checked (and, for a writer, set up) over a plain connection in a worker thread first.
    await asyncio.to_thread(_prepare, path, read_only)
    async with aiosqlite.connect(_read_only_uri(path) if read_only else path, uri=read_only) as connection:
        saver = AsyncSqliteSaver(connection)
        if read_only:
            saver.is_setup = True  # the tables are there (checked); setup() would write
        else:
            await connection.execute(_SQLITE_SYNCHRONOUS)
            await connection.execute(_SQLITE_CHECKPOINT_EVERY)
            await saver.setup()
        yield saver


def _prepare(path: str, read_only: bool) -> None:
    if read_only:
        _connect(path, read_only=True).close()
    else:
        with open_sqlite_saver(path, SqliteSaver):
            pass


class SqliteFileSaver(SqliteSaver):
    """LangGraph's `SqliteSaver` (same tables, same file format) that also serves
    `ainvoke`: its async methods run the sync ones in place.

    LangGraph's `AsyncSqliteSaver` sends every statement, fetch and commit through
    aiosqlite's worker thread, each a round trip between threads: 3-4 per saver call,
    28 saver calls per cascade question under durability="sync". Measured with
    `python -m benchmarks --only overhead` (async path, cascade, ms per model call over
    the plain cascade; medians of three runs on a shared two-core machine): this saver
    +1.00 wall / +0.89 CPU, `AsyncSqliteSaver` +1.22 / +1.17 (its row there). A write
    here is a few tens of microseconds of local I/O (WAL, no fsync on commit), done on
    the event loop like the serialization around it: right for one run per process
    (`sift solve`, evaluations), not for a server's event loop
    (:func:`aopen_sqlite_saver`). One connection serves both faces; the saver's lock
    keeps them apart.
    """

    @classmethod
    @contextmanager
    def open(cls, path: str) -> Iterator[SqliteFileSaver]:
        """The saver on `path`, tables created and commits set to skip the fsync."""
        with open_sqlite_saver(path, cls) as saver:
            yield saver

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        # Read them all before yielding: the sync generator holds the saver's lock
        # while it iterates, and a caller writing between two items would wait on it.
        for item in list(self.list(config, filter=filter, before=before, limit=limit)):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    async def aget_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Mapping[str, Any]:
        return self.get_delta_channel_history(config=config, channels=channels)
