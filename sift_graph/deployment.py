"""The deployment's own settings on a served path (a minimal stand-in until issue 21 lands):
which model, its server, the cache and dtype come from the server's environment,
`SIFT_<FIELD>`, and a client's context names run settings only (`run_settings`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import field
from typing import Any

from sift_graph.context import SiftContext, setting_specs

DEPLOYMENT_SETTINGS = frozenset({"model", "base_url", "api_key", "cache", "dtype", "request_timeout"})
"""What only a deployment chooses: which model, its server and key, the cache, the dtype."""


def run_settings(context: SiftContext) -> dict[str, Any]:
    """The run-scope settings of `context` (what a client may send a server), by name."""
    return {
        spec.name: getattr(context, spec.name)
        for spec in setting_specs(type(context))
        if spec.name not in DEPLOYMENT_SETTINGS
    }


def deployment_settings_from_env() -> dict[str, Any]:
    """A served run's deployment settings, from the server's `SIFT_<FIELD>` variables."""
    return {
        spec.name: spec.value_type(os.environ[f"SIFT_{spec.name.upper()}"])
        for spec in setting_specs()
        if spec.name in DEPLOYMENT_SETTINGS and not spec.secret and os.environ.get(f"SIFT_{spec.name.upper()}")
    }


def deployed_context_class() -> type[SiftContext]:
    """A served graph's context schema: SiftContext with the deployment's `SIFT_<FIELD>`
    settings as its defaults (a client's context then names run settings only)."""
    defaults = deployment_settings_from_env()
    fields = [
        (item.name, item.type, field(default=defaults[item.name], metadata=item.metadata))
        for item in dataclasses.fields(SiftContext)
        if item.name in defaults
    ]
    namespace = {"__module__": SiftContext.__module__}  # where its fields' type hints resolve
    return dataclasses.make_dataclass(
        "DeployedSiftContext", fields, bases=(SiftContext,), namespace=namespace, kw_only=True
    )
