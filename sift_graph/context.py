"""Run-scoped configuration: which model answers and how hard SIFT tries.

Passed as `context=SiftContext(...)` to `invoke`/`stream`; nodes read it from `Runtime`.
It never enters the checkpointed state, so a model object or an API key stays out of it.

`SiftContext`'s fields are the one definition of a run setting: each carries its help
text and how it is treated as field metadata, and everything else is derived from them:
the CLI flags of `sift solve` and `sift eval` (`setting_specs`), the settings stored with
a run for `--resume` (`stored_settings`, never the API key) and the evaluation's
configuration digest (`result_settings`). A new setting is one new field.

A number setting declares its bounds on its type (`Annotated[int, Ge(0), Le(MAX_ROUNDS)]`,
annotated-types, the vocabulary pydantic itself is built on): construction checks them
(`SettingSpec.checked`, a ValueError naming the field) and LangGraph's JSON schema of the
context (Studio's form) shows them as `minimum`/`maximum`, beside each field's help,
type and default. SiftContext stays a kw-only dataclass rather than a pydantic model:
the LangGraph template style, `dataclasses.replace`/`fields` keep working (the served
schema and `Deployment` use them), no coercion behind a caller's back (pydantic's lax mode
takes "5" or True as an int), and one-line errors naming the field where pydantic raises
a multi-line ValidationError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le
from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langgraph.runtime import Runtime
from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema

from sift_graph.answers import Comparator
from sift_graph.models.decoding import DEFAULT_MAX_TOKENS, is_sampled
from sift_graph.models.specs import (
    DEFAULT_MODEL_SPEC,
    DEFAULT_REQUEST_TIMEOUT_S,
    Connection,
    LoadOptions,
    is_served,
    validate_model_spec,
)
from sift_graph.partials import CONTINUATION_HELP, PARTIALS_HELP, Continuation, validate_partial_settings
from sift_graph.setting_spec import DEPLOYMENT, RUN, specs_of_fields
from sift_graph.setting_spec import SettingSpec as SettingSpec  # still public here

Dtype = Literal["auto", "bfloat16", "float32"]
FallbackAnswer = Literal["cot", "query_sticker"]
StickerCheck = Literal["none", "numbers"]
SIFT_STAGES = (1, 2, 3)
"""SIFT's stages: the first round, forward optimization, inverse generation (+ FO)."""

MAX_ROUNDS = 16
"""The most forward (and, apart, inverse) rounds a run may ask for. The paper runs one of
each; its iterative-optimization study gains little after a few. Past this a run is
almost surely a typo (`--forward-rounds 1000`), and each round costs two full solves."""

Rounds = Annotated[int, Ge(0), Le(MAX_ROUNDS)]
"""A count of forward (or inverse) rounds."""

# Field metadata: "description" (the help text) and the keys `setting_spec` reads.


_DEPLOYMENT_SETTING = {"results": False, "scope": DEPLOYMENT}  # the deployment's business, not a client's


@dataclass(kw_only=True)
class SiftContext:
    """Settings for one SIFT run. Bad values raise `ValueError` naming the field."""

    # Studio reads the settings' JSON schema: a model or cache instance is library-only.
    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)

    model: BaseChatModel | str | None = field(
        default=DEFAULT_MODEL_SPEC,
        metadata={
            "scope": DEPLOYMENT,
            "description": "model spec: 'default' (the embedded SmolLM2-135M-Instruct), "
            "'hf:<folder|file.gguf|hub id>' or 'openai:<model>'; in the library also a LangChain chat model",
        },
    )
    forward_rounds: Rounds = field(
        default=1,
        metadata={
            "scope": RUN,
            "description": "rounds of forward optimization after the first round (paper: 1)",
            "sift_only": True,
        },
    )
    inverse_rounds: Rounds = field(
        default=1,
        metadata={
            "scope": RUN,
            "description": "rounds of inverse generation + forward optimization (paper: 1)",
            "sift_only": True,
        },
    )
    max_stage: Annotated[int, Ge(SIFT_STAGES[0]), Le(SIFT_STAGES[-1])] = field(
        default=3,
        metadata={
            "description": "a budget in stages: the last SIFT stage to run, 1 (the first round only), "
            "2 (+ forward optimization) or 3 (+ inverse generation: the paper's method); past it, "
            "the fallback answers",
            "omit_default": True,
            "sift_only": True,
            "scope": RUN,
        },
    )
    fallback_answer: FallbackAnswer = field(
        default="cot",
        metadata={
            "description": "the answer where no round agreed: 'cot' (a direct chain-of-thought solve, the "
            "paper's) or 'query_sticker' (the last round's query+sticker prediction: no further call)",
            "omit_default": True,
            "sift_only": True,
            "scope": RUN,
        },
    )
    sticker_check: StickerCheck = field(
        default="none",
        metadata={
            "description": "a check in code after each forward optimization: 'none' (the paper's) or "
            "'numbers' (drop the sticker's conditions that state a number the question does not, "
            "unless none would be left)",
            "omit_default": True,
            "sift_only": True,
            "scope": RUN,
        },
    )
    max_tokens: Annotated[int, Ge(1)] = field(
        default=DEFAULT_MAX_TOKENS, metadata={"scope": RUN, "description": "new-token limit of every model call"}
    )
    temperature: Annotated[float, Ge(0), Le(2)] = field(
        default=0.0, metadata={"scope": RUN, "description": "sampling temperature; 0 is greedy decoding"}
    )
    top_p: Annotated[float, Gt(0), Le(1)] | None = field(
        default=None, metadata={"scope": RUN, "description": "nucleus sampling mass, used only when temperature > 0"}
    )
    seed: int | None = field(
        default=None,
        metadata={
            "scope": RUN,
            "description": "random seed of sampled calls (temperature > 0; sent to servers that accept "
            "'seed'); sift eval gives sample k the seed SEED + k",
        },
    )
    comparator: Comparator = field(
        default="math",
        metadata={
            "scope": RUN,
            "description": "answer equivalence for consensus (and grading in eval): 'math' (math-verify) "
            "or 'string' (the paper's reference string comparison)",
        },
    )
    dtype: Dtype = field(
        default="auto",
        metadata={
            "scope": DEPLOYMENT,
            "description": "weights of a local model: 'auto' (bf16 on GPUs and on CPUs with native bf16, "
            "AVX512-BF16 or AMX; fp32 elsewhere), 'bfloat16' or 'float32' (changes greedy outputs slightly)",
        },
    )
    base_url: str | None = field(
        default=None,
        metadata={
            "scope": DEPLOYMENT,
            "description": "the OpenAI-compatible server of an openai: spec (else $OPENAI_BASE_URL)",
        },
    )
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "scope": DEPLOYMENT,
            "description": "its API key (else $OPENAI_API_KEY; prefer the variable: flags show in ps)",
            "secret": True,
        },
    )
    cache: str | SkipJsonSchema[BaseCache] = field(
        default="run",
        metadata={
            "scope": DEPLOYMENT,
            "description": "call cache: 'run' (an identical call within a run is made once), 'off', or a "
            "SQLite file that also keeps calls across runs and processes (sift eval's default: "
            ".sift/cache.sqlite beside the checkpoints); in the library also any LangChain BaseCache",
            "results": False,
        },
    )
    request_timeout: Annotated[float, Gt(0)] = field(
        default=DEFAULT_REQUEST_TIMEOUT_S,
        metadata={
            "scope": DEPLOYMENT,
            "description": "seconds one model request may take before it counts as failed",
            "flag": "--timeout",
            "results": False,
        },
    )

    partials: str | None = field(default=None, metadata={"description": PARTIALS_HELP, **_DEPLOYMENT_SETTING})
    continuation: Continuation = field(
        default="auto", metadata={"description": CONTINUATION_HELP, **_DEPLOYMENT_SETTING}
    )

    def __post_init__(self) -> None:
        if not (self.model is None or isinstance(self.model, (str, BaseChatModel))):
            raise ValueError(
                f"model: expected a LangChain BaseChatModel, a spec string or None, got {type(self.model).__name__}"
            )
        if isinstance(self.model, str):
            validate_model_spec(self.model)
        for spec in setting_specs(type(self)):  # numbers within their bounds, a Literal's values
            setattr(self, spec.name, spec.checked(getattr(self, spec.name)))
        if self.api_key is not None and not (isinstance(self.api_key, str) and self.api_key):
            raise ValueError(f"api_key: expected a non-empty string or None, got {type(self.api_key).__name__}")
        if self.base_url is not None and not (
            isinstance(self.base_url, str) and self.base_url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"base_url: expected an http:// or https:// URL, got {self.base_url!r}")
        if not (isinstance(self.cache, BaseCache) or (isinstance(self.cache, str) and self.cache.strip())):
            raise ValueError(
                f"cache: expected 'run', 'off', a SQLite file or a LangChain BaseCache, got {self.cache!r}"
            )
        validate_partial_settings(self.partials)

    @property
    def connection(self) -> Connection:
        return Connection(base_url=self.base_url, api_key=self.api_key, timeout=self.request_timeout)

    @property
    def round_budget(self) -> tuple[int, int]:
        """(forward rounds, inverse rounds) the run may spend: none in stages past `max_stage`."""
        return (
            self.forward_rounds if self.max_stage >= 2 else 0,
            self.inverse_rounds if self.max_stage >= 3 else 0,
        )

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
        is served or given as an instance: there they do nothing. A stage budget is
        stated as the rounds it leaves (`--max-stage 1` is `--forward-rounds 0
        --inverse-rounds 0`: one run, one digest), and a setting marked "omit_default" is
        left out at its default."""
        settings = {
            spec.name: getattr(self, spec.name)
            for spec in setting_specs(type(self))
            if spec.changes_results
            and not spec.secret
            and not (spec.omit_default and getattr(self, spec.name) == spec.default)
        }
        settings["forward_rounds"], settings["inverse_rounds"] = self.round_budget
        settings.pop("max_stage", None)
        if not is_sampled(self.temperature):
            settings["top_p"] = settings["seed"] = None  # greedy decoding ignores both
        if not isinstance(self.model, str) or is_served(self.model):
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


def setting_specs(context_class: type[SiftContext] = SiftContext) -> tuple[SettingSpec, ...]:
    """Every setting of `context_class` (SiftContext or a subclass), in field order."""
    return specs_of_fields(context_class)


def run_settings(context: SiftContext) -> dict[str, Any]:
    """The run-scope settings of `context` (what a client may send a server), by name."""
    return {spec.name: getattr(context, spec.name) for spec in setting_specs(type(context)) if not spec.deployment}


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
