"""Checkpointers from one setting string.

A setting is one of:

- ``"memory"``: LangGraph's in-memory saver (a process's lifetime; tests, notebooks);
- ``"postgresql://..."`` (or ``postgres://``): LangGraph's PostgreSQL saver, for teams and
  for many workers sharing one database;
- anything else: a SQLite file path (``sqlite:///`` prefix optional), created with its
  folder on first use. The CLI's default is :data:`DEFAULT_CHECKPOINTS`.

Both a sync and an async opener are given because LangGraph's savers come in one flavour
each: ``graph.invoke`` needs a sync saver and ``graph.ainvoke`` an async one. The in-memory
saver serves both. SQLite is LangGraph's ``SqliteSaver`` for ``invoke``, and for
``ainvoke`` :class:`SqliteFileSaver`, the same saver with its async methods done in place
(measured faster than LangGraph's ``AsyncSqliteSaver`` for one run per process; see the
class). A server, whose event loop serves everyone, gets ``AsyncSqliteSaver`` itself
(:func:`aopen_sqlite_saver`). Every SQLite opener refuses another program's database and
commits without an fsync (:func:`open_sqlite_saver`). The tables are created (``setup()``)
on open, so a fresh file or an empty database just works.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Durability

from sift_graph.sqlite_files import other_tables, table_names, with_folder
from sift_graph.sqlite_files import sqlite_file as sqlite_file  # public here since 0.1

if TYPE_CHECKING:
    import psycopg
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

#: Where the CLI keeps its runs unless told otherwise (``--checkpoints`` or this variable).
DEFAULT_CHECKPOINTS = os.path.join(".sift", "checkpoints.sqlite")
CHECKPOINTS_ENV = "SIFT_CHECKPOINTS"

#: How runs are checkpointed: "sync" writes each step's checkpoint before the next step
#: starts, so a process killed at any moment loses at most the model calls in flight.
#: ("async" overlaps the write with the next step, and a kill can lose a finished step;
#: "exit" writes only at the end.) A write costs far less than a model call.
RUN_DURABILITY: Durability = "sync"

_POSTGRES_PREFIXES = ("postgresql://", "postgres://")
# Enough connections for the graph's parallel predictions across a batch of runs; a
# worker needing more waits for one rather than failing.
_POOL_MAX_SIZE = 16
_CONNECT_TIMEOUT_S = 10


def default_checkpoints() -> str:
    """The CLI's setting: ``$SIFT_CHECKPOINTS`` when set, else ``.sift/checkpoints.sqlite``."""
    return os.environ.get(CHECKPOINTS_ENV) or DEFAULT_CHECKPOINTS


def checkpoint_kind(setting: str) -> str:
    """``"memory"``, ``"postgres"`` or ``"sqlite"``; ``ValueError`` naming the field if empty."""
    if not isinstance(setting, str) or not setting.strip():
        raise ValueError("checkpoints: expected 'memory', a SQLite file path or a postgresql:// URL")
    if setting == "memory":
        return "memory"
    if setting.startswith(_POSTGRES_PREFIXES):
        return "postgres"
    return "sqlite"


def describe_checkpoints(setting: str) -> str:
    """The setting as it is safe to print: a PostgreSQL password is masked."""
    if checkpoint_kind(setting) != "postgres":
        return setting
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(setting)
    except Exception:
        return "postgresql://…"
    user = params.get("user", "")
    host = params.get("host", "")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{'@' if user else ''}{host}{port}/{params.get('dbname', '')}"


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


# The PostgreSQL analogue of SQLite's synchronous=NORMAL, for the saver's own sessions
# only: the server acknowledges a commit before its WAL reaches the disk, so a step's
# checkpoint costs no fsync wait (a durability='sync' run writes two per step). A killed
# or crashed SIFT process loses nothing (the server has every commit); a crash of the
# database server itself can lose its last fraction of a second of commits (at most
# 3 x wal_writer_delay), never corrupt anything, and a resumed run redoes those steps.
_POSTGRES_SESSION_SETUP = "SET synchronous_commit = off"


def _configure_postgres(connection: psycopg.Connection[Any]) -> None:
    connection.execute(_POSTGRES_SESSION_SETUP)


async def _aconfigure_postgres(connection: psycopg.AsyncConnection[Any]) -> None:
    await connection.execute(_POSTGRES_SESSION_SETUP)


def _postgres_connection_kwargs() -> dict[str, Any]:
    from psycopg.rows import dict_row

    # What LangGraph's saver expects of its connections: autocommit (each write is its
    # own transaction) and rows as dicts; prepared statements from the first use.
    return {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


def _setup_postgres(setting: str) -> None:
    """Create the saver's tables over one plain connection first: a wrong URL or a server
    that is down fails here at once with the driver's own message, where a pool would
    retry quietly until its timeout."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    with psycopg.connect(setting, connect_timeout=_CONNECT_TIMEOUT_S, **_postgres_connection_kwargs()) as conn:
        PostgresSaver(conn).setup()


@contextmanager
def _open_local_saver(kind: str, setting: str, sqlite_class: type[SqliteSaver]) -> Iterator[BaseCheckpointSaver[str]]:
    """The in-memory saver (it serves `invoke` and `ainvoke` alike) or `sqlite_class` on
    the setting's file, its folder created."""
    if kind == "memory":
        yield InMemorySaver()
    else:
        with open_sqlite_saver(with_folder(sqlite_file(setting)), sqlite_class) as saver:
            yield saver


@contextmanager
def open_checkpointer(setting: str) -> Iterator[BaseCheckpointSaver[str]]:
    """A ready saver for ``graph.invoke``/``graph.stream``; closed on exit."""
    kind = checkpoint_kind(setting)
    if kind != "postgres":
        with _open_local_saver(kind, setting, SqliteSaver) as saver:
            yield saver
    else:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg_pool import ConnectionPool

        _setup_postgres(setting)
        with ConnectionPool(
            setting,
            min_size=1,
            max_size=_POOL_MAX_SIZE,
            kwargs=_postgres_connection_kwargs(),
            configure=_configure_postgres,
        ) as pool:
            yield PostgresSaver(pool)


@asynccontextmanager
async def aopen_checkpointer(setting: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """A ready saver for ``graph.ainvoke``/``graph.astream``; closed on exit."""
    kind = checkpoint_kind(setting)
    if kind != "postgres":
        with _open_local_saver(kind, setting, SqliteFileSaver) as saver:
            yield saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg_pool import AsyncConnectionPool

        await asyncio.to_thread(_setup_postgres, setting)
        async with AsyncConnectionPool(
            setting,
            min_size=1,
            max_size=_POOL_MAX_SIZE,
            kwargs=_postgres_connection_kwargs(),
            configure=_aconfigure_postgres,
            open=False,
        ) as pool:
            yield AsyncPostgresSaver(pool)
