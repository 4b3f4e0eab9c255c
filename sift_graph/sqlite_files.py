"""The SQLite files SIFT keeps (checkpoints, call cache, partial replies): how a setting
names one, its folder made for a first run, and how a file that is another program's is
found before anything is written to it. A leaf: every store asks here."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"
IN_MEMORY = ":memory:"


def sqlite_file(setting: str) -> str:
    """The file a SQLite setting names (`sqlite:///` prefix optional, `:memory:` as is),
    without touching the disk."""
    path = setting.removeprefix(SQLITE_PREFIX)
    return path if path == IN_MEMORY else str(Path(path).expanduser())


def with_folder(path: str | Path) -> str:
    """`path`, its folder created for a first run (`:memory:` as is)."""
    if str(path) != IN_MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def table_names(connection: sqlite3.Connection) -> set[str]:
    return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def other_tables(tables: set[str]) -> str:
    """How a refusal names a file's tables that are not ours."""
    return f"it holds other tables ({', '.join(sorted(tables)[:4])})"


def open_sqlite_store(
    path: Path, create: str, foreign: Callable[[set[str]], str | None] | None = None
) -> sqlite3.Connection:
    """A store's SQLite file, opened for concurrent use: WAL, committed writes kept by a
    killed process (no fsync each: `synchronous=NORMAL`, as the checkpoints), its table
    created. `foreign(tables)` says what makes the file another program's, before any change."""
    connection = sqlite3.connect(with_folder(path), check_same_thread=False, isolation_level=None)
    if foreign is not None and (problem := foreign(table_names(connection))) is not None:
        connection.close()
        raise sqlite3.DatabaseError(problem)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(create)
    return connection
