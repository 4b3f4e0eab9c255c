"""What a `sift serve` server is configured with: the run settings every request starts
from, where runs are checkpointed, and how many may run at once.

`sift serve` builds them from its flags; inside the LangGraph server (langgraph.json's
`http.app`) they come from the environment (`settings_from_env`):
- the deployment's settings and bounds (`sift_graph.deployment.deployment_from_env`:
  `SIFT_<FIELD>`, `OPENAI_API_KEY` / `OPENAI_BASE_URL`, `SIFT_MAX_TOKENS_LIMIT`,
  `SIFT_MAX_ROUNDS_LIMIT`);
- `SIFT_CHECKPOINTS`: the checkpoint store (default `.sift/checkpoints.sqlite`, as for
  `sift solve`);
- `SIFT_MAX_CONCURRENCY`: requests run at once before a 429 (default 16).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from langgraph.types import RetryPolicy

from sift_graph.checkpoints import CHECKPOINTS_ENV, DEFAULT_CHECKPOINTS, checkpoint_kind, default_checkpoints
from sift_graph.context import SiftContext
from sift_graph.deployment import Deployment, RunLimits, deployment_from_env, parse_env_value
from sift_graph.graph import MODEL_RETRY

MODEL_ID = "sift"
"""The one model a server lists and answers as (`model` in every request)."""
DEFAULT_MAX_CONCURRENCY = 16
MAX_CONCURRENCY_ENV = "SIFT_MAX_CONCURRENCY"
GRACEFUL_SHUTDOWN_S = 5
"""Seconds that requests still open when `sift serve` stops (Ctrl-C) get to finish
before their runs are cancelled."""
ANSWER_CANCELLED_S = 5
"""Seconds, after that, for each of them to be answered that its run was cancelled."""
SHUTDOWN_TIMEOUT_S = GRACEFUL_SHUTDOWN_S + ANSWER_CANCELLED_S
"""The longest a stopping server waits for its open requests, streams included."""


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """A server's settings. Bad values raise `ValueError` naming the field."""

    context: SiftContext = field(default_factory=SiftContext)
    """The deployment's settings and every request's run defaults; a request may
    override its decoding (within `limits`), nothing else."""
    checkpoints: str = field(default_factory=default_checkpoints)
    """The checkpoint store every request's run is kept in (see `sift_graph.checkpoints`)."""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Runs in progress at once; a request beyond them is answered 429."""
    retry_policy: RetryPolicy | None = MODEL_RETRY
    """The model nodes' retry policy (`build_sift_graph`)."""
    limits: RunLimits = field(default_factory=RunLimits)
    """The largest `max_tokens` and rounds a request may ask for."""

    @cached_property
    def deployment(self) -> Deployment:
        """The settings as a `Deployment`: a request takes run settings only, within `limits`."""
        return Deployment(context=self.context, limits=self.limits)

    def __post_init__(self) -> None:
        self.limits.check(self.context)
        checkpoint_kind(self.checkpoints)
        count = self.max_concurrency
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"max_concurrency: expected an integer >= 1, got {count!r}")


def settings_from_env(environ: Mapping[str, str] | None = None) -> ServeSettings:
    """The settings the environment gives (see the table above); a bad value raises
    `ValueError` naming its variable."""
    environ = os.environ if environ is None else environ
    deployment = deployment_from_env(environ)
    concurrency = environ.get(MAX_CONCURRENCY_ENV)
    max_concurrency = parse_env_value(MAX_CONCURRENCY_ENV, concurrency, int) if concurrency else DEFAULT_MAX_CONCURRENCY
    if max_concurrency < 1:
        raise ValueError(f"{MAX_CONCURRENCY_ENV}: expected an integer >= 1, got {concurrency!r}")
    return ServeSettings(
        context=deployment.context,
        limits=deployment.limits,
        checkpoints=environ.get(CHECKPOINTS_ENV) or DEFAULT_CHECKPOINTS,
        max_concurrency=max_concurrency,
    )
