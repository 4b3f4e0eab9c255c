"""Chat models by spec: `default`, `hf:<...>`, `openai:<model>`, `scripted:<file.json>`.

- `specs`: the spec grammar, `Connection`, the loader registry and `resolve_model` (a leaf);
- `openai_compat`: the client for OpenAI-compatible servers (`openai_request`: its lean
  path's request, from public fields only);
- `local`: local transformers models, whose concurrent calls `scheduler` generates together:
  rows of one `padded_batch` (its cache growing in place, `kv_cache`; prompt prefixes
  reused, `prefix_cache`), each row decoded by its own settings (`sampling`);
- `decoding`: which calls are sampled (`is_sampled`), the one rule every layer asks;
- `devices`: the dtype (and device map) a local model loads in;
- `gguf`: the one-time GGUF conversion cache.

The engines are imported on first use of their names, so `import sift_graph` does not
load transformers or the OpenAI client.
"""

from __future__ import annotations

import importlib
from typing import Any

from sift_graph.models.specs import (
    DEFAULT_MODEL_SPEC,
    LOADERS,
    SERVED_PREFIX,
    Connection,
    LoadOptions,
    aresolve_model,
    is_served,
    register_loader,
    resolve_model,
    split_spec,
    validate_model_spec,
)

_LAZY = {
    "OpenAICompatibleChatModel": "openai_compat",
    "chat_completion_request": "openai_request",
    "load_openai_model": "openai_spec",
    "LocalChatModel": "local",
    "default_model_path": "local",
    "load_local_model": "local",
    "BatchScheduler": "scheduler",
    "GenerationRequest": "scheduler",
    "GenerationResult": "scheduler",
    "cache_dir": "gguf",
    "converted_gguf_folder": "gguf",
}

__all__ = [
    "DEFAULT_MODEL_SPEC",
    "LOADERS",
    "SERVED_PREFIX",
    "Connection",
    "LoadOptions",
    "aresolve_model",
    "is_served",
    "register_loader",
    "resolve_model",
    "split_spec",
    "validate_model_spec",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"sift_graph.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'sift_graph.models' has no attribute {name!r}")
