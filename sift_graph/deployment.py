"""The trust boundary of a served SIFT: the deployment owns its model, a client its run.

A served path (the graphs in `graphs/` on the LangGraph server, the HTTP app, `sift
serve`) takes from a client only the run settings (`SiftContext` fields of scope
"run": decoding, rounds, comparator, seed), within the deployment's bounds. Which model,
its server and key, the call cache and the dtype are the deployment's (scope
"deployment"), from its environment or `sift serve`'s flags; a client that names one is
refused with a ValueError naming the field, before any model call.

The environment (`deployment_from_env`):
- `SIFT_<FIELD>` (`SIFT_MODEL`, `SIFT_BASE_URL`, `SIFT_MAX_TOKENS`, ...): that field, for
  every field but the API key (a run field's variable sets its default);
- `OPENAI_API_KEY`, and `OPENAI_BASE_URL` when `SIFT_BASE_URL` is unset (read by the
  `openai:` loader);
- `SIFT_MAX_TOKENS_LIMIT` (default 4096) and `SIFT_MAX_ROUNDS_LIMIT` (default 4): the
  largest `max_tokens` and forward/inverse rounds a client may ask for (a default
  above a limit comes down to it; a value set above it is an error).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any

from annotated_types import Le
from langgraph.runtime import Runtime

from sift_graph.context import MAX_ROUNDS, SiftContext, run_settings, setting_specs

ENV_PREFIX = "SIFT_"
MAX_TOKENS_LIMIT_ENV = "SIFT_MAX_TOKENS_LIMIT"
MAX_ROUNDS_LIMIT_ENV = "SIFT_MAX_ROUNDS_LIMIT"
DEFAULT_MAX_TOKENS_LIMIT = 4096
DEFAULT_MAX_ROUNDS_LIMIT = 4
ROUND_SETTINGS = ("forward_rounds", "inverse_rounds")
DEPLOYMENT_SETTINGS = frozenset(spec.name for spec in setting_specs() if spec.deployment)
"""SiftContext's deployment settings, by name: never a client's."""


def env_name(setting: str) -> str:
    """`max_tokens` -> `SIFT_MAX_TOKENS`."""
    return ENV_PREFIX + setting.upper()


def parse_env_value(variable: str, raw: str, value_type: type) -> Any:
    """`raw` as `value_type` (int, float or str); ValueError naming `variable`."""
    if value_type is str:
        return raw
    try:
        return value_type(raw)
    except ValueError:
        raise ValueError(
            f"{variable}: expected {'an integer' if value_type is int else 'a number'}, got {raw!r}"
        ) from None


class OverLimit(ValueError):
    """A run setting above the deployment's bound (its message names the field)."""


@dataclass(frozen=True, kw_only=True)
class RunLimits:
    """The largest run settings a client of a deployment may ask for."""

    max_tokens: int = DEFAULT_MAX_TOKENS_LIMIT
    max_rounds: int = DEFAULT_MAX_ROUNDS_LIMIT
    """For `forward_rounds` and `inverse_rounds` each."""

    def __post_init__(self) -> None:
        for name, value, top in (("max_tokens", self.max_tokens, None), ("max_rounds", self.max_rounds, MAX_ROUNDS)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if top else 1):
                raise ValueError(f"{name} limit: expected an integer >= {0 if top else 1}, got {value!r}")
            if top is not None and value > top:
                raise ValueError(f"{name} limit: at most {top}, got {value}")

    def ceilings(self) -> dict[str, int]:
        """The largest value a client may ask for, by run setting."""
        return {"max_tokens": self.max_tokens, **dict.fromkeys(ROUND_SETTINGS, self.max_rounds)}

    def check(self, context: SiftContext) -> None:
        """ValueError naming the field a run setting of `context` is over its limit."""
        for name, top in self.ceilings().items():
            if (value := getattr(context, name)) > top:
                unit = " rounds" if name in ROUND_SETTINGS else ""
                raise OverLimit(f"{name}: this deployment allows at most {top}{unit}, got {value}")


def refuse_deployment_settings(settings: Mapping[str, Any]) -> None:
    """ValueError naming the first key of `settings` that is not a run setting."""
    specs = {spec.name: spec for spec in setting_specs()}
    allowed = ", ".join(name for name, spec in specs.items() if not spec.deployment)
    for name in settings:
        spec = specs.get(name)
        if spec is None:
            raise ValueError(f"{name}: not a SIFT run setting (a client may set: {allowed})")
        if spec.deployment:
            raise ValueError(
                f"{name}: a deployment setting, chosen by the server's operator and never by a client "
                f"(a client may set: {allowed})"
            )


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """What a served SIFT runs with: its settings (every deployment setting, and the run
    settings' defaults) and the bounds on what a client may ask for."""

    context: SiftContext = field(default_factory=SiftContext)
    limits: RunLimits = field(default_factory=RunLimits)

    def __post_init__(self) -> None:
        self.limits.check(self.context)  # its own defaults are within its bounds

    def served_context(self, settings: Mapping[str, Any]) -> SiftContext:
        """The deployment's context with a client's run `settings`; ValueError naming
        the field for a deployment setting, an unknown one, a bad value or one over its limit."""
        refuse_deployment_settings(settings)
        context = dataclasses.replace(self.context, **settings)
        self.limits.check(context)
        return context

    def context_of(self, runtime: Runtime[Any]) -> SiftContext:
        """A served run's SiftContext, from its runtime context (the served schema's
        instance, a mapping of run settings, or none: the deployment's defaults)."""
        context = runtime.context
        if context is None:
            return self.context
        if isinstance(context, ServedRunSettings):
            return context.sift_context()
        if isinstance(context, Mapping):
            return self.served_context(context)
        raise ValueError(
            f"context: a served graph takes a mapping of run settings, got {type(context).__name__} "
            "(the deployment chooses the model, its server, key and cache)"
        )

    @cached_property
    def context_schema(self) -> type[ServedRunSettings]:
        """The served graphs' context schema: only the run settings (what Studio's form
        shows), derived from SiftContext's fields, with the deployment's defaults."""
        return served_run_schema(self)


class ServedRunSettings:
    """Base of a deployment's context schema (see `served_run_schema`)."""

    deployment: Deployment

    def __init__(self, **settings: Any) -> None:
        # Refused here, as the server hands the context over: before any model call.
        self._context = self.deployment.served_context(settings)
        for name, value in run_settings(self._context).items():
            object.__setattr__(self, name, value)

    def sift_context(self) -> SiftContext:
        return self._context


def served_run_schema(deployment: Deployment) -> type[ServedRunSettings]:
    """A dataclass of SiftContext's run fields (their types and bounds, help and the
    deployment's defaults; the deployment's limits as further bounds, so that Studio's form
    shows what this server takes) whose constructor refuses the deployment's settings."""
    hints = typing.get_type_hints(SiftContext, include_extras=True)
    ceilings = deployment.limits.ceilings()
    run_fields = [
        (
            item.name,
            Annotated[hints[item.name], Le(ceilings[item.name])] if item.name in ceilings else hints[item.name],
            field(default=getattr(deployment.context, item.name), metadata=item.metadata),
        )
        for item in dataclasses.fields(SiftContext)
        if item.name in run_settings(deployment.context)
    ]
    namespace = {"deployment": deployment, "__module__": __name__, "__doc__": "Run settings a client may choose."}
    return dataclasses.make_dataclass(
        "SiftRunSettings", run_fields, bases=(ServedRunSettings,), namespace=namespace, init=False, kw_only=True
    )


def deployment_from_env(environ: Mapping[str, str] | None = None) -> Deployment:
    """The deployment the environment gives (see the module's table); a bad value raises
    `ValueError` naming its variable."""
    environ = os.environ if environ is None else environ
    given: dict[str, Any] = {}
    for spec in setting_specs():
        variable = env_name(spec.name)
        if spec.secret or not environ.get(variable):
            continue
        value = parse_env_value(variable, environ[variable], spec.value_type)
        try:
            SiftContext(**{spec.name: value})  # checked alone, so the error names its variable
        except ValueError as exc:
            raise ValueError(f"{variable}: {exc}") from None
        given[spec.name] = value
    limits: dict[str, int] = {}
    for name, variable in (("max_tokens", MAX_TOKENS_LIMIT_ENV), ("max_rounds", MAX_ROUNDS_LIMIT_ENV)):
        if raw := environ.get(variable):
            limits[name] = parse_env_value(variable, raw, int)
    try:
        bounds = RunLimits(**limits)
    except ValueError as exc:
        raise ValueError(f"{MAX_TOKENS_LIMIT_ENV} / {MAX_ROUNDS_LIMIT_ENV}: {exc}") from None
    # A default over a lowered limit comes down to it; a value the operator set does not.
    defaults = SiftContext()
    given.setdefault("max_tokens", min(defaults.max_tokens, bounds.max_tokens))
    for name in ROUND_SETTINGS:
        given.setdefault(name, min(getattr(defaults, name), bounds.max_rounds))
    return Deployment(context=SiftContext(**given), limits=bounds)
