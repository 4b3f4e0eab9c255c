"""Partial replies: what a streaming call has generated so far, kept so an interrupt
loses at most the last save interval.

While a call streams, its text (and a local model's token ids) is saved, throttled
(`SAVE_EVERY_TOKENS` or `SAVE_EVERY_S`, whichever comes first), in a SQLite store
keyed by the call's identity: the model, the prompt and the decoding settings (a
sampled call's seed among them). A call that finishes deletes its partial. A call that
starts and finds one (the node ran again on resume) hands it to the model, which
continues it when it can (`Continuation`) and otherwise starts over.

The model reaches its call's `PartialCall` through a context variable (`recording`),
as the call cache's slot does: the loaded model stays one shared object.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sift_graph.sqlite_files import open_sqlite_store as open_sqlite_store  # its home before the checkpoints shared it
from sift_graph.sqlite_files import sqlite_file

Continuation = Literal["auto", "prefill", "continue_final_message", "restart"]
"""How an interrupted call goes on (see `SiftContext.continuation`)."""

PARTIALS_HELP = (
    "SQLite file where calls save their replies while they stream, so a resumed run continues an "
    "interrupted one (default: the --cache file; sift solve: partials.sqlite beside its checkpoints)"
)
CONTINUATION_HELP = (
    "how an interrupted reply goes on (see sift_graph/models/openai_stream.py): 'prefill' (llama-server, "
    "local models), 'continue_final_message' (vLLM, SGLang), 'restart', or 'auto' (by the server's /models)"
)
"""Help of the `SiftContext` fields `partials` and `continuation`."""

SAVE_EVERY_TOKENS = 32
SAVE_EVERY_S = 2.0
PARTIALS_TABLE = "sift_partials"

_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {PARTIALS_TABLE} "
    "(key TEXT PRIMARY KEY, text TEXT NOT NULL, tokens INTEGER NOT NULL, token_ids TEXT)"
)
_SELECT = f"SELECT text, tokens, token_ids FROM {PARTIALS_TABLE} WHERE key = ?"
_UPSERT = f"INSERT OR REPLACE INTO {PARTIALS_TABLE} (key, text, tokens, token_ids) VALUES (?, ?, ?, ?)"
_DELETE = f"DELETE FROM {PARTIALS_TABLE} WHERE key = ?"
_COUNT = f"SELECT COUNT(*) FROM {PARTIALS_TABLE}"


@dataclass(frozen=True)
class Partial:
    """A reply cut off mid-way: its text so far and how many tokens that was."""

    text: str
    tokens: int
    token_ids: list[int] | None = None
    """A local model's own tokens (continued exactly, with no re-tokenization)."""


class PartialStore:
    """Partial replies in a SQLite file (its own table: it may share the call cache's file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        try:
            self._connection = open_sqlite_store(self.path, _CREATE)
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ValueError(f"partials: cannot keep partial replies in {str(self.path)!r}: {reason}") from exc

    def load(self, key: str) -> Partial | None:
        with self._lock:
            row = self._connection.execute(_SELECT, (key,)).fetchone()
        if row is None:
            return None
        text, tokens, token_ids = row
        return Partial(text=text, tokens=int(tokens), token_ids=None if token_ids is None else json.loads(token_ids))

    def save(self, key: str, partial: Partial) -> None:
        ids = None if partial.token_ids is None else json.dumps(partial.token_ids)
        with self._lock:
            self._connection.execute(_UPSERT, (key, partial.text, partial.tokens, ids))

    def delete(self, key: str) -> None:
        with self._lock:
            self._connection.execute(_DELETE, (key,))

    def count(self) -> int:
        with self._lock:
            return int(self._connection.execute(_COUNT).fetchone()[0])


def validate_partial_settings(partials: Any) -> None:
    """ValueError naming the field unless `partials` is a file path or None
    (`continuation`, a Literal, is checked against its values as every such field is)."""
    if partials is not None and not (isinstance(partials, str) and partials.strip()):
        raise ValueError(f"partials: expected a SQLite file path or None, got {partials!r}")


def partials_file(partials: str | None, cache: Any) -> str | None:
    """Where partial replies are saved: `partials`, else the call cache's SQLite file."""
    if partials is not None:
        return partials
    if isinstance(cache, str) and cache not in ("run", "off"):
        return cache
    return None


_STORES: dict[Path, PartialStore] = {}
_STORES_LOCK = threading.Lock()


def partial_store(path: str | None) -> PartialStore | None:
    """The store a `partials` setting names (opened once per process), or None."""
    if not path:
        return None
    resolved = Path(sqlite_file(path)).resolve()
    with _STORES_LOCK:
        if resolved not in _STORES:
            _STORES[resolved] = PartialStore(resolved)
        return _STORES[resolved]


def call_key(model_identity: Any, prompt: str, decoding: dict[str, Any]) -> str:
    """A call's identity: same model, prompt and decoding settings (seed included), same key."""
    described = json.dumps([model_identity, prompt, decoding], sort_keys=True, default=str)
    return hashlib.sha256(described.encode()).hexdigest()


@dataclass
class PartialCall:
    """One call's partial reply: what it found when it started and what it has streamed.

    The model feeds it (`record`) as it streams; saves are throttled."""

    key: str
    store: PartialStore | None
    continuation: Continuation = "auto"
    found: Partial | None = None
    """The partial an earlier, interrupted try of this call left."""
    continued_from: int | None = None
    """Tokens of `found` the model continued from (None: it started over)."""
    text: str = ""
    tokens: int = 0
    token_ids: list[int] | None = None
    saves: int = 0
    save_every_tokens: int = SAVE_EVERY_TOKENS
    save_every_s: float = SAVE_EVERY_S
    _saved_tokens: int = field(default=0, repr=False)
    _saved_at: float = field(default_factory=time.monotonic, repr=False)

    def continue_from(self, partial: Partial) -> None:
        """The model continues `partial`: what it streams next comes after it."""
        self.continued_from = partial.tokens
        self.text, self.tokens = partial.text, partial.tokens
        self.token_ids = None if partial.token_ids is None else list(partial.token_ids)
        self._saved_tokens = self.tokens

    def record(self, text: str, tokens: int = 1, token_ids: list[int] | None = None) -> None:
        """`tokens` more tokens were generated, reading `text`; save when one interval is up."""
        self.text += text
        self.tokens += tokens
        if token_ids is not None:
            self.token_ids = [*(self.token_ids or []), *token_ids]
        if self.store is None:
            return
        now = time.monotonic()
        if self.tokens - self._saved_tokens >= self.save_every_tokens or now - self._saved_at >= self.save_every_s:
            self.store.save(self.key, Partial(self.text, self.tokens, self.token_ids))
            self._saved_tokens, self._saved_at = self.tokens, now
            self.saves += 1

    def finished(self) -> None:
        """The call has its whole reply: its partial is no longer needed."""
        if self.store is not None and (self.saves or self.found is not None):
            self.store.delete(self.key)


_CURRENT: ContextVar[PartialCall | None] = ContextVar("sift_partial_call", default=None)


def current_partial() -> PartialCall | None:
    """The partial reply of the call in progress, for the model to continue and feed."""
    return _CURRENT.get()


@contextmanager
def recording(call: PartialCall | None) -> Iterator[PartialCall | None]:
    """The model called inside continues `call.found` when it can and feeds `call`."""
    token = _CURRENT.set(call)
    try:
        yield call
    finally:
        _CURRENT.reset(token)
