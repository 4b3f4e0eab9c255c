"""The call cache: an identical model call is made once.

LangChain's chat-model cache does the keying (`BaseChatModel(cache=...)`): the key is the
serialized prompt and the model's own description with every call parameter (model,
server, decoding, seed), so one model's reply is never handed to another. What is ours
is where replies live, in two layers, and the mark each cached reply carries:

- the run's layer (`RunCache`, in memory): a call a run has already made, made again in
  the same run (a refinement that returned the sticker unchanged, so the next round's
  predictions are the last round's calls). Served free: the run spent nothing on it.
- the store (optional, any LangChain `BaseCache`; `SqliteCallCache` for `--cache FILE`):
  calls made by earlier runs or processes. Served at the cost they had when they were
  made, so a rerun reports what the run costs, while making no request.

A cached reply carries `response_metadata["sift_cache"]`: "run" or "store".

How a call finds its cache: each model gets `CALL_CACHE_SLOT` as its LangChain cache
once (`attach`; a model that has a cache of its own keeps it), and `serving(cache)`
puts the call's cache in a context variable around the call. So the loaded model stays
one shared object (no per-call copies), and concurrent runs each see their own layer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation

from sift_graph.partials import PARTIALS_TABLE
from sift_graph.sqlite_files import open_sqlite_store, other_tables, sqlite_file

CacheSource = Literal["run", "store"]
CACHE_MARK = "sift_cache"
RUN_CACHES_KEPT = 256
"""Runs whose layers stay in memory (least recently used go first: a run evicted
mid-way only loses savings, never correctness)."""


def _key(prompt: str, llm_string: str) -> str:
    return hashlib.sha256(f"{llm_string}\x00{prompt}".encode()).hexdigest()


def marked(generations: Sequence[Generation], source: CacheSource) -> list[Generation]:
    """Copies of cached generations whose messages say where they came from."""
    result: list[Generation] = []
    for generation in generations:
        if isinstance(generation, ChatGeneration):
            metadata = {**generation.message.response_metadata, CACHE_MARK: source}
            message = generation.message.model_copy(update={"response_metadata": metadata})
            generation = generation.model_copy(update={"message": message})
        result.append(generation)
    return result


def encode_reply(generations: Sequence[Generation]) -> str:
    """A cached reply as plain JSON: the message's text and metadata, nothing to run.
    (LangChain's own `dumps`/`loads` can revive any serializable class, which a cache
    file shared between users must not be able to make us do.)"""
    items: list[dict[str, Any]] = []
    for generation in generations:
        if isinstance(generation, ChatGeneration) and isinstance(generation.message, AIMessage):
            message = generation.message
            items.append(
                {
                    "content": message.content,
                    "additional_kwargs": message.additional_kwargs,
                    "response_metadata": message.response_metadata,
                    "usage_metadata": message.usage_metadata,
                    "generation_info": generation.generation_info,
                }
            )
        else:
            items.append({"text": generation.text, "generation_info": generation.generation_info})
    return json.dumps(items, default=str)


def decode_reply(text: str) -> list[Generation]:
    generations: list[Generation] = []
    for item in json.loads(text):
        if "content" in item:
            message = AIMessage(
                content=item["content"],
                additional_kwargs=item.get("additional_kwargs") or {},
                response_metadata=item.get("response_metadata") or {},
                usage_metadata=item.get("usage_metadata"),
            )
            generations.append(ChatGeneration(message=message, generation_info=item.get("generation_info")))
        else:
            generations.append(Generation(text=item["text"], generation_info=item.get("generation_info")))
    return generations


_CREATE = "CREATE TABLE IF NOT EXISTS sift_calls (key TEXT PRIMARY KEY, reply TEXT NOT NULL)"
_SELECT = "SELECT reply FROM sift_calls WHERE key = ?"
_INSERT = "INSERT OR REPLACE INTO sift_calls (key, reply) VALUES (?, ?)"


def foreign_tables(tables: set[str]) -> str | None:
    """What makes a SQLite file not a call cache (partial replies may share it)."""
    if tables - {PARTIALS_TABLE} and "sift_calls" not in tables:
        return f"not a SIFT call cache: {other_tables(tables)}"
    return None


class SqliteCallCache(BaseCache):
    """A persistent call cache in a SQLite file (`--cache FILE`): one row per call,
    keyed by a digest of LangChain's cache key, the reply as plain JSON."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        try:
            self._connection = open_sqlite_store(self.path, _CREATE, foreign_tables)
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ValueError(f"cache: cannot use {str(self.path)!r} as a call cache: {reason}") from exc

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        with self._lock:
            row = self._connection.execute(_SELECT, (_key(prompt, llm_string),)).fetchone()
        return None if row is None else decode_reply(row[0])

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        with self._lock:
            self._connection.execute(_INSERT, (_key(prompt, llm_string), encode_reply(return_val)))

    def clear(self, **kwargs: Any) -> None:
        with self._lock:
            self._connection.execute("DELETE FROM sift_calls")

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class RunCache(BaseCache):
    """One run's view of the cache: its own calls first, then the store (if any).

    A store hit is copied into the run's layer, so it is charged once: when the run
    first needs it, as it was when it was made."""

    def __init__(self, store: BaseCache | None = None) -> None:
        self.store = store
        self._calls: dict[str, list[Generation]] = {}
        self._lock = threading.Lock()

    def _made(self, key: str) -> RETURN_VAL_TYPE | None:
        with self._lock:
            made = self._calls.get(key)
        return None if made is None else marked(made, "run")

    def _keep(self, key: str, generations: RETURN_VAL_TYPE) -> None:
        with self._lock:
            self._calls[key] = list(generations)

    def _from_store(self, key: str, stored: RETURN_VAL_TYPE | None) -> RETURN_VAL_TYPE | None:
        """A store's hit, kept in the run's layer, returned marked as the store's. (Only a
        lookup marks: an update's reply is not read back, and a copy costs per call.)"""
        if stored is not None:
            self._keep(key, stored)
        return None if stored is None else marked(stored, "store")

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        key = _key(prompt, llm_string)
        made = self._made(key)
        if made is not None or self.store is None:
            return made
        return self._from_store(key, self.store.lookup(prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self._keep(_key(prompt, llm_string), return_val)
        if self.store is not None:
            self.store.update(prompt, llm_string, return_val)

    # The run's layer in place; the store's async path (SQLite's: a worker thread).
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        key = _key(prompt, llm_string)
        made = self._made(key)
        if made is not None or self.store is None:
            return made
        return self._from_store(key, await self.store.alookup(prompt, llm_string))

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self._keep(_key(prompt, llm_string), return_val)
        if self.store is not None:
            await self.store.aupdate(prompt, llm_string, return_val)

    def clear(self, **kwargs: Any) -> None:
        with self._lock:
            self._calls.clear()


class RunCaches:
    """The layers of the runs in this process, by run token (bounded, LRU)."""

    def __init__(self, kept: int = RUN_CACHES_KEPT) -> None:
        self._kept = kept
        self._runs: OrderedDict[tuple[str, int], RunCache] = OrderedDict()
        self._lock = threading.Lock()

    def for_run(self, token: str, store: BaseCache | None) -> RunCache:
        key = (token, id(store))
        with self._lock:
            cache = self._runs.get(key)
            if cache is None:
                cache = self._runs[key] = RunCache(store)
                while len(self._runs) > self._kept:
                    self._runs.popitem(last=False)
            self._runs.move_to_end(key)
            return cache


RUN_CACHES = RunCaches()
OPEN_STORES_KEPT = 8
"""Call-cache files kept open (LRU); one evicted is dropped, not closed (a run may hold it)."""
_STORES: OrderedDict[Path, SqliteCallCache] = OrderedDict()
_STORES_LOCK = threading.Lock()


def call_store(setting: str | BaseCache | None) -> BaseCache | None:
    """The persistent layer a `cache` setting names: None for "run" and "off", a
    `BaseCache` as is, else the SQLite file (opened once per process). ValueError
    naming `cache` when the file cannot be used."""
    if setting is None or isinstance(setting, BaseCache):
        return setting
    if setting in ("run", "off"):
        return None
    path = Path(sqlite_file(setting)).resolve()
    with _STORES_LOCK:
        if path not in _STORES:
            _STORES[path] = SqliteCallCache(path)
            while len(_STORES) > OPEN_STORES_KEPT:
                _STORES.popitem(last=False)
        _STORES.move_to_end(path)
        return _STORES[path]


_CALL_CACHE: ContextVar[BaseCache | None] = ContextVar("sift_call_cache", default=None)


class CallCacheSlot(BaseCache):
    """The LangChain cache our models carry: it forwards to the cache of the call in
    progress (`serving`), and is no cache at all outside one."""

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        cache = _CALL_CACHE.get()
        return None if cache is None else cache.lookup(prompt, llm_string)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        cache = _CALL_CACHE.get()
        if cache is not None:
            cache.update(prompt, llm_string, return_val)

    # The call's cache decides where its work runs: a dict in place, a file off the loop.
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        cache = _CALL_CACHE.get()
        return None if cache is None else await cache.alookup(prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        cache = _CALL_CACHE.get()
        if cache is not None:
            await cache.aupdate(prompt, llm_string, return_val)

    def clear(self, **kwargs: Any) -> None:
        """Nothing to clear: the slot holds no replies."""


CALL_CACHE_SLOT = CallCacheSlot()


def attach(model: BaseChatModel) -> BaseChatModel:
    """Give `model` the slot as its LangChain cache, once; a model with a cache of its
    own (or `cache=False`) keeps it."""
    if model.cache is None:
        model.cache = CALL_CACHE_SLOT
    return model


@contextmanager
def serving(cache: BaseCache | None) -> Iterator[None]:
    """Calls made inside look up and store their replies in `cache` (None: no cache)."""
    token = _CALL_CACHE.set(cache)
    try:
        yield
    finally:
        _CALL_CACHE.reset(token)
