"""Run-scoped configuration: which model answers and how hard SIFT tries.

Passed as `context=SiftContext(...)` to `invoke`/`stream`; nodes read it from `Runtime`.
It never enters the checkpointed state, so a model object or an API key stays out of it.

`SiftContext`'s fields are the one definition of a run setting: each carries its help
text and how it is treated as field metadata, and everything else is derived from them:
the CLI flags of `sift solve` and `sift eval` (`setting_specs`), the settings stored with
a run for `--resume` (`stored_settings`, never the API key) and the evaluation's
configuration digest (`result_settings`). A new setting is one new field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langgraph.runtime import Runtime
from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema

from sift_graph.answers import Comparator
from sift_graph.models.specs import (
    DEFAULT_MODEL_SPEC,
    SERVED_PREFIX,
    Connection,
    LoadOptions,
    validate_model_spec,
)

Dtype = Literal["auto", "bfloat16", "float32"]

MAX_ROUNDS = 16
"""The most forward (and, apart, inverse) rounds a run may ask for. The paper runs one of
each; its iterative-optimization study gains little after a few. Past this a run is
almost surely a typo (`--forward-rounds 1000`), and each round costs two full solves."""

# Field metadata keys beyond react-agent's "description":
#   "flag":    the CLI flag, when it is not `--` + the name with dashes;
#   "secret":  never stored with a run, never part of a digest, hidden from `repr`;
#   "results": False for a setting that cannot change an answer (left out of the digest).


@dataclass(kw_only=True)
class SiftContext:
    """Settings for one SIFT run. Bad values raise `ValueError` naming the field."""

    # Studio reads the settings' JSON schema: a model or cache instance is library-only.
    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)

    model: BaseChatModel | str | None = field(
        default=DEFAULT_MODEL_SPEC,
        metadata={
            "description": "model spec: 'default' (the embedded SmolLM2-135M-Instruct), "
            "'hf:<folder|file.gguf|hub id>' or 'openai:<model>'; in the library also a LangChain chat model"
        },
    )
    forward_rounds: int = field(
        default=1, metadata={"description": "rounds of forward optimization after the first round (paper: 1)"}
    )
    inverse_rounds: int = field(
        default=1, metadata={"description": "rounds of inverse generation + forward optimization (paper: 1)"}
    )
    max_tokens: int = field(default=1024, metadata={"description": "new-token limit of every model call"})
    temperature: float = field(default=0.0, metadata={"description": "sampling temperature; 0 is greedy decoding"})
    top_p: float | None = field(
        default=None, metadata={"description": "nucleus sampling mass, used only when temperature > 0"}
    )
    seed: int | None = field(
        default=None,
        metadata={
            "description": "random seed of sampled calls (temperature > 0; sent to servers that accept "
            "'seed'); sift eval gives sample k the seed SEED + k"
        },
    )
    comparator: Comparator = field(
        default="math",
        metadata={
            "description": "answer equivalence for consensus (and grading in eval): 'math' (math-verify) "
            "or 'string' (the paper's reference string comparison)"
        },
    )
    dtype: Dtype = field(
        default="auto",
        metadata={
            "description": "weights of a local model: 'auto' (bf16 on GPUs and on CPUs with native bf16, "
            "AVX512-BF16 or AMX; fp32 elsewhere), 'bfloat16' or 'float32' (changes greedy outputs slightly)"
        },
    )
    base_url: str | None = field(
        default=None,
        metadata={"description": "the OpenAI-compatible server of an openai: spec (else $OPENAI_BASE_URL)"},
    )
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "description": "its API key (else $OPENAI_API_KEY; prefer the variable: flags show in ps)",
            "secret": True,
        },
    )
    cache: str | SkipJsonSchema[BaseCache] = field(
        default="run",
        metadata={
            "description": "call cache: 'run' (an identical call within a run is made once), 'off', or a "
            "SQLite file that also keeps calls across runs and processes (sift eval's default: "
            ".sift/cache.sqlite beside the checkpoints); in the library also any LangChain BaseCache",
            "results": False,
        },
    )
    request_timeout: float = field(
        default=120.0,
        metadata={
            "description": "seconds one model request may take before it counts as failed",
            "flag": "--timeout",
            "results": False,
        },
    )

    def __post_init__(self) -> None:
        if not (self.model is None or isinstance(self.model, (str, BaseChatModel))):
            raise ValueError(
                f"model: expected a LangChain BaseChatModel, a spec string or None, got {type(self.model).__name__}"
            )
        if isinstance(self.model, str):
            validate_model_spec(self.model)
        for name in ("forward_rounds", "inverse_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
            if value > MAX_ROUNDS:
                raise ValueError(f"{name}: at most {MAX_ROUNDS} rounds (each costs two full solves), got {value}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens: expected an integer >= 1, got {self.max_tokens!r}")
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature: expected a number in [0, 2], got {self.temperature!r}")
        if self.top_p is not None and not (_is_number(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p: expected a number in (0, 1] or None, got {self.top_p!r}")
        if not _is_number(self.request_timeout) or self.request_timeout <= 0:
            raise ValueError(f"request_timeout: expected a number of seconds > 0, got {self.request_timeout!r}")
        if self.base_url is not None and not (
            isinstance(self.base_url, str) and self.base_url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"base_url: expected an http:// or https:// URL, got {self.base_url!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed: expected an integer or None, got {self.seed!r}")
        if not (isinstance(self.cache, BaseCache) or (isinstance(self.cache, str) and self.cache.strip())):
            raise ValueError(
                f"cache: expected 'run', 'off', a SQLite file or a LangChain BaseCache, got {self.cache!r}"
            )
        if self.comparator not in ("math", "string"):
            raise ValueError(f"comparator: expected 'math' or 'string', got {self.comparator!r}")
        if self.dtype not in typing.get_args(Dtype):
            raise ValueError(f"dtype: expected 'auto', 'bfloat16' or 'float32', got {self.dtype!r}")
        # One spelling per value: 0 and 0.0 are one setting (and one eval digest).
        self.temperature = float(self.temperature)
        self.request_timeout = float(self.request_timeout)
        self.top_p = None if self.top_p is None else float(self.top_p)

    @property
    def connection(self) -> Connection:
        return Connection(base_url=self.base_url, api_key=self.api_key, timeout=self.request_timeout)

    @property
    def load_options(self) -> LoadOptions:
        return LoadOptions(dtype=self.dtype)

    def stored_settings(self) -> dict[str, Any]:
        """The settings kept with a run so that `--resume` continues it as it started:
        every field but the secret ones (a model instance is not storable: its spec
        is, so only a spec string is kept)."""
        settings = {spec.name: getattr(self, spec.name) for spec in setting_specs(type(self)) if not spec.secret}
        for instance_or_spec in ("model", "cache"):
            if not isinstance(settings.get(instance_or_spec), str):
                settings.pop(instance_or_spec, None)
        return settings

    def result_settings(self) -> dict[str, Any]:
        """The settings that can change an answer (the evaluation's configuration digest).
        `top_p` and `seed` are left out of greedy runs, and `dtype` out of runs whose model
        is served or given as an instance: there they do nothing."""
        settings = {
            spec.name: getattr(self, spec.name)
            for spec in setting_specs(type(self))
            if spec.changes_results and not spec.secret
        }
        if not self.temperature > 0:
            settings["top_p"] = settings["seed"] = None  # greedy decoding ignores both
        if not isinstance(self.model, str) or self.model.startswith(SERVED_PREFIX):
            # Only a local spec is loaded with a dtype. Left out rather than set to None, so a
            # served model's result sets keep the digest they had before the setting existed.
            del settings["dtype"]
        return settings

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **overrides: Any) -> SiftContext:
        """A context from stored settings (see `stored_settings`), then `overrides`.
        Unknown keys raise ValueError naming them."""
        merged = {LEGACY_SETTING_NAMES.get(name, name): value for name, value in settings.items()}
        merged.update(overrides)
        known = {spec.name for spec in setting_specs(cls)}
        if unknown := sorted(set(merged) - known):
            raise ValueError(f"{unknown[0]}: not a SIFT setting (known: {', '.join(sorted(known))})")
        return cls(**merged)


# Stored settings written under another name by earlier versions.
LEGACY_SETTING_NAMES = {"timeout": "request_timeout"}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SettingSpec:
    """One run setting, as the CLI and the stores see it (derived from a context field)."""

    name: str
    flag: str
    default: Any
    description: str
    value_type: type
    """What a command-line value is parsed as: int, float or str."""
    choices: tuple[str, ...] | None
    secret: bool
    changes_results: bool


def _value_type(hint: Any) -> tuple[type, tuple[str, ...] | None]:
    """int, float or str (with its choices for a Literal) from a field's type hint."""
    if typing.get_origin(hint) is Literal:
        return str, tuple(str(choice) for choice in typing.get_args(hint))
    if typing.get_origin(hint) in (Union, types.UnionType):
        kinds = [_value_type(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        for kind in kinds:
            if kind[0] is not object:
                return kind
        return str, None
    if hint in (int, float, str):
        return hint, None
    return object, None


def setting_specs(context_class: type[SiftContext] = SiftContext) -> tuple[SettingSpec, ...]:
    """Every setting of `context_class` (SiftContext or a subclass), in field order."""
    hints = typing.get_type_hints(context_class)
    specs = []
    for item in dataclasses.fields(context_class):
        value_type, choices = _value_type(hints[item.name])
        specs.append(
            SettingSpec(
                name=item.name,
                flag=item.metadata.get("flag") or "--" + item.name.replace("_", "-"),
                default=item.default,
                description=item.metadata.get("description", ""),
                value_type=str if value_type is object else value_type,
                choices=choices,
                secret=bool(item.metadata.get("secret", False)),
                changes_results=bool(item.metadata.get("results", True)),
            )
        )
    return tuple(specs)


def context_of(runtime: Runtime[Any]) -> SiftContext:
    """The run's SiftContext (a run without one gets the defaults; the LangGraph server
    hands context over as JSON, which is validated here)."""
    context = runtime.context
    if context is None:
        return SiftContext()
    if isinstance(context, Mapping):
        return SiftContext.from_settings(context)
    if not isinstance(context, SiftContext):
        raise ValueError(f"context: expected a SiftContext or a mapping of its fields, got {type(context).__name__}")
    return context


# --- run and deployment settings (a minimal stand-in until issue 21's scopes land) -------

DEPLOYMENT_SETTINGS = frozenset({"model", "base_url", "api_key", "cache", "dtype", "request_timeout"})
"""What only a deployment chooses: which model, its server and key, the cache, the dtype."""


def run_settings(context: SiftContext) -> dict[str, Any]:
    """The run-scope settings of `context` (what a client may send a server), by name."""
    return {
        spec.name: getattr(context, spec.name)
        for spec in setting_specs(type(context))
        if spec.name not in DEPLOYMENT_SETTINGS
    }
