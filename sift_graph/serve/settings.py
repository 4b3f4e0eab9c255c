"""What a `sift serve` server is configured with: the run settings every request starts
from, where runs are checkpointed, and how many may run at once.

`sift serve` builds them from its flags; inside the LangGraph server (langgraph.json's
`http.app`) they come from the environment (`settings_from_env`):
- `SIFT_<FIELD>` (`SIFT_MODEL`, `SIFT_MAX_TOKENS`, `SIFT_BASE_URL`, ...): that `SiftContext`
  field, for every field but the API key;
- `OPENAI_API_KEY`, and `OPENAI_BASE_URL` when `SIFT_BASE_URL` is unset: the upstream
  key and server (read by the `openai:` loader, as everywhere);
- `SIFT_CHECKPOINTS`: the checkpoint store (default `.sift/checkpoints.sqlite`, as for
  `sift solve`);
- `SIFT_MAX_CONCURRENCY`: requests run at once before a 429 (default 16).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.types import RetryPolicy

from sift_graph.checkpoints import CHECKPOINTS_ENV, DEFAULT_CHECKPOINTS, checkpoint_kind, default_checkpoints
from sift_graph.context import SiftContext, setting_specs
from sift_graph.graph import MODEL_RETRY

MODEL_ID = "sift"
"""The one model a server lists and answers as (`model` in every request)."""
DEFAULT_MAX_CONCURRENCY = 16
ENV_PREFIX = "SIFT_"
MAX_CONCURRENCY_ENV = "SIFT_MAX_CONCURRENCY"


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """A server's settings. Bad values raise `ValueError` naming the field."""

    context: SiftContext = field(default_factory=SiftContext)
    """The run settings of every request; a request may override its decoding."""
    checkpoints: str = field(default_factory=default_checkpoints)
    """The checkpoint store every request's run is kept in (see `sift_graph.checkpoints`)."""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Runs in progress at once; a request beyond them is answered 429."""
    retry_policy: RetryPolicy | None = MODEL_RETRY
    """The model nodes' retry policy (`build_sift_graph`)."""

    def __post_init__(self) -> None:
        checkpoint_kind(self.checkpoints)
        count = self.max_concurrency
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"max_concurrency: expected an integer >= 1, got {count!r}")


def env_name(setting: str) -> str:
    """`max_tokens` -> `SIFT_MAX_TOKENS`."""
    return ENV_PREFIX + setting.upper()


def _parse(variable: str, raw: str, value_type: type) -> Any:
    if value_type is str:
        return raw
    try:
        return value_type(raw)
    except ValueError:
        raise ValueError(
            f"{variable}: expected {'an integer' if value_type is int else 'a number'}, got {raw!r}"
        ) from None


def settings_from_env(environ: Mapping[str, str] | None = None) -> ServeSettings:
    """The settings the environment gives (see the table above); a bad value raises
    `ValueError` naming its variable."""
    environ = os.environ if environ is None else environ
    given: dict[str, Any] = {}
    for spec in setting_specs():
        variable = env_name(spec.name)
        if spec.secret or not environ.get(variable):
            continue
        value = _parse(variable, environ[variable], spec.value_type)
        try:
            SiftContext(**{spec.name: value})  # checked alone, so the error names its variable
        except ValueError as exc:
            raise ValueError(f"{variable}: {exc}") from None
        given[spec.name] = value
    concurrency = environ.get(MAX_CONCURRENCY_ENV)
    max_concurrency = _parse(MAX_CONCURRENCY_ENV, concurrency, int) if concurrency else DEFAULT_MAX_CONCURRENCY
    if max_concurrency < 1:
        raise ValueError(f"{MAX_CONCURRENCY_ENV}: expected an integer >= 1, got {concurrency!r}")
    return ServeSettings(
        context=SiftContext(**given),
        checkpoints=environ.get(CHECKPOINTS_ENV) or DEFAULT_CHECKPOINTS,
        max_concurrency=max_concurrency,
    )
