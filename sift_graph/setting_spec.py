"""A run setting as the CLI, the server's environment and the stores see it: its flag,
default, help, how a command-line value is parsed, and how it is treated. Derived from
`SiftContext`'s fields by `context.setting_specs`."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

# Field metadata keys beyond react-agent's "description":
#   "flag":    the CLI flag, when it is not `--` + the name with dashes;
#   "secret":  never stored with a run, never part of a digest, hidden from `repr`;
#   "results": False for a setting that cannot change an answer (left out of the digest);
#   "omit_default": True for a setting added after result sets existed: left out of the
#              digest at its default, so those result sets keep their digest;
#   "scope":   DEPLOYMENT or RUN, explicit on every field (a test holds a new one to it);
#   "sift_only": True for a setting of SIFT's rounds that a plain chain-of-thought solve
#              (the CoT baseline, self-consistency's samples) does not read.


DEPLOYMENT = "deployment"
"""Scope of a setting only the deployment chooses: which model, its server and key, the
call cache, the local dtype, anything that names a file, a host or code to load, or
that loads a new client when varied (`request_timeout`). A served path takes these from
its deployment only, never from a client."""
RUN = "run"
"""Scope of a setting a caller may choose per run: decoding, rounds, comparator, seed
(a served path bounds them, see `sift_graph.deployment`)."""


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
    omit_default: bool
    """Left out of the digest at its default (see `SiftContext.result_settings`)."""
    sift_only: bool
    """Read by SIFT's rounds only, not by a plain chain-of-thought solve."""
    deployment: bool
    """Whether only the deployment chooses it (scope DEPLOYMENT): a served path refuses it from a client."""


def value_type_of(hint: Any) -> tuple[type, tuple[str, ...] | None]:
    """int, float or str (with its choices for a Literal) from a field's type hint."""
    if typing.get_origin(hint) is Literal:
        return str, tuple(str(choice) for choice in typing.get_args(hint))
    if typing.get_origin(hint) in (Union, types.UnionType):
        kinds = [value_type_of(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        for kind in kinds:
            if kind[0] is not object:
                return kind
        return str, None
    if hint in (int, float, str):
        return hint, None
    return object, None


def _scope(item: dataclasses.Field[Any]) -> str:
    scope = item.metadata.get("scope")
    if scope not in (DEPLOYMENT, RUN):
        raise TypeError(f"{item.name}: a SiftContext field declares its scope: 'deployment' or 'run', got {scope!r}")
    return str(scope)


def specs_of_fields(context_class: type) -> tuple[SettingSpec, ...]:
    """Every setting of a settings dataclass (`SiftContext` or a subclass), in field order."""
    hints = typing.get_type_hints(context_class)
    specs = []
    for item in dataclasses.fields(context_class):
        value_type, choices = value_type_of(hints[item.name])
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
                omit_default=bool(item.metadata.get("omit_default", False)),
                sift_only=bool(item.metadata.get("sift_only", False)),
                deployment=_scope(item) == DEPLOYMENT,
            )
        )
    return tuple(specs)
