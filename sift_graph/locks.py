"""One process at a time per run, and per result set.

A process that runs or resumes a thread holds that thread's lock until it stops; a
second process asking for it is told at once who holds it (`LockHeld`). The locks die
with their holder, kill -9 included, so a crashed run never leaves a stale lock:

- SQLite stores: an `flock` on a file per thread in a folder beside the database
  (`runs.sqlite-locks/`); the file names the holder's pid and goes away on release.
- PostgreSQL: a session-level advisory lock keyed by the thread, held on a connection of
  its own whose `application_name` names the holder's pid.
- `memory`: nothing to lock: no other process can see the run.

POSIX only (`fcntl`), like the rest of the CLI's process handling.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from sift_graph.checkpoints import checkpoint_kind, sqlite_file

_APPLICATION_NAME = "sift pid {pid}"


class LockHeld(Exception):
    """Another live process holds the lock; `holder` is its pid when known."""

    def __init__(self, what: str, holder: int | None) -> None:
        self.what, self.holder = what, holder
        super().__init__(f"{what} is in use by {self.by}")

    @property
    def by(self) -> str:
        """Who holds it, as a message says it: "pid 123", or "another process"."""
        return f"pid {self.holder}" if self.holder is not None else "another process"


def _thread_key(thread_id: str) -> bytes:
    return hashlib.sha256(thread_id.encode()).digest()


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created, with our pid in it), or raise
    `LockHeld` at once. The file is removed on release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            raise LockHeld(what, holder) from None
        # The last holder may have removed the file between our open and our flock:
        # then we hold a lock on a file nobody else will find. Start over.
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding the lock: nobody can take it mid-removal
        os.close(fd)


def _pid_in(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def run_lock(setting: str, thread_id: str) -> Iterator[None]:
    """Hold the lock of run `thread_id` in the checkpoint store `setting`, or raise
    `LockHeld` naming the process that runs it."""
    kind = checkpoint_kind(setting)
    what = f"run {thread_id}"
    if kind == "memory":
        yield
    elif kind == "sqlite":
        database = Path(sqlite_file(setting)).resolve()  # one lock per file, whatever the path to it
        folder = database.with_name(database.name + "-locks")
        with file_lock(folder / f"{_thread_key(thread_id).hex()[:32]}.lock", what):
            yield
    else:
        with _advisory_lock(setting, thread_id, what):
            yield


@contextlib.contextmanager
def _advisory_lock(url: str, thread_id: str, what: str) -> Iterator[None]:
    import psycopg

    key = int.from_bytes(_thread_key(thread_id)[:8], "big", signed=True)
    with psycopg.connect(url, autocommit=True, application_name=_APPLICATION_NAME.format(pid=os.getpid())) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not row or not row[0]:
            raise LockHeld(what, _advisory_holder(conn, key))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _advisory_holder(conn: object, key: int) -> int | None:
    """The pid in the application name of the session holding advisory lock `key`."""
    import psycopg

    assert isinstance(conn, psycopg.Connection)
    # pg_locks shows a bigint advisory key as two 32-bit halves.
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    ).fetchone()
    name = str(row[0]) if row else ""
    prefix = _APPLICATION_NAME.split("{")[0]
    return int(name[len(prefix) :]) if name.startswith(prefix) and name[len(prefix) :].isdigit() else None
