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
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Durability

from sift_graph.sqlite_files import sqlite_file, with_folder
from sift_graph.sqlite_savers import SqliteFileSaver, aopen_sqlite_saver, foreign_store_problem, open_sqlite_saver

if TYPE_CHECKING:
    import psycopg

__all__ = [  # the SQLite pieces are public here too, as they were before sqlite_savers
    "CHECKPOINTS_ENV",
    "DEFAULT_CHECKPOINTS",
    "RUN_DURABILITY",
    "SqliteFileSaver",
    "aopen_checkpointer",
    "aopen_sqlite_saver",
    "checkpoint_kind",
    "default_checkpoints",
    "describe_checkpoints",
    "foreign_store_problem",
    "open_checkpointer",
    "open_sqlite_saver",
    "sqlite_file",
]

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
