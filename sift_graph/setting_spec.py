"""A run setting as the CLI, the server's environment and the stores see it: its flag,
default, help, how a command-line value is parsed, which values it takes, and how it is
treated. Derived from `SiftContext`'s fields by `context.setting_specs`.

A number setting's bounds are declared on its type with annotated-types' `Ge`, `Gt`, `Le`,
`Lt` (or `Interval`): `Annotated[int, Ge(0), Le(16)]`. `SettingSpec.checked` enforces them
(a ValueError naming the field), and pydantic, which LangGraph asks for the context's JSON
schema, writes them as the schema's `minimum`/`maximum`: one declaration, both uses."""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, GroupedMetadata, Gt, Le, Lt

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
    optional: bool = False
    """Whether None is one of its values (a `X | None` field)."""
    bounds: tuple[Ge | Gt | Le | Lt, ...] = ()
    """A number setting's bounds, as declared on its type."""

    def checked(self, value: Any) -> Any:
        """`value` as the setting keeps it, or ValueError naming the setting. A Literal
        setting takes one of its choices; a number setting a finite int or float (never a
        bool) within its bounds, a float setting's int kept as a float (one spelling per
        value: 0 and 0.0 are one setting, and one eval digest)."""
        if value is None and self.optional:
            return value
        if self.choices is not None:
            if value not in self.choices:
                *others, last = (repr(choice) for choice in self.choices)
                raise ValueError(f"{self.name}: expected {', '.join(others)} or {last}, got {value!r}")
            return value
        if self.value_type not in (int, float):
            return value
        if not _is_number(value, self.value_type) or not all(_holds(bound, value) for bound in self.bounds):
            kind = "an integer" if self.value_type is int else "a number"
            optional = " or None" if self.optional else ""
            raise ValueError(f"{self.name}: expected {kind}{_range_text(self.bounds)}{optional}, got {value!r}")
        return float(value) if self.value_type is float else value


# Each bound: its attribute (Ge(0).ge), its symbol and its test.
_BOUND_KINDS: dict[type, tuple[str, str, Callable[[Any, Any], bool]]] = {
    Ge: ("ge", ">=", operator.ge),
    Gt: ("gt", ">", operator.gt),
    Le: ("le", "<=", operator.le),
    Lt: ("lt", "<", operator.lt),
}


def _limit(bound: Ge | Gt | Le | Lt) -> Any:
    return getattr(bound, _BOUND_KINDS[type(bound)][0])


def _holds(bound: Ge | Gt | Le | Lt, value: Any) -> bool:
    return _BOUND_KINDS[type(bound)][2](value, _limit(bound))


def _range_text(bounds: tuple[Ge | Gt | Le | Lt, ...]) -> str:
    """The bounds as an error states them: ` in [0, 2]`, ` in (0, 1]`, ` >= 1`, or nothing."""
    lower = next((bound for bound in bounds if isinstance(bound, (Ge, Gt))), None)
    upper = next((bound for bound in bounds if isinstance(bound, (Le, Lt))), None)
    if lower is not None and upper is not None:
        opening, closing = "[" if isinstance(lower, Ge) else "(", "]" if isinstance(upper, Le) else ")"
        return f" in {opening}{_limit(lower)}, {_limit(upper)}{closing}"
    return "".join(f" {_BOUND_KINDS[type(bound)][1]} {_limit(bound)}" for bound in (lower, upper) if bound is not None)


def _is_number(value: Any, value_type: type) -> bool:
    """An int (not a bool) for an int setting; a finite int or float for a float setting
    (NaN and the infinities are no setting: JSON cannot even carry them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if value_type is int else math.isfinite(value)


def _bounds_of(hint: Any) -> tuple[Ge | Gt | Le | Lt, ...]:
    """The bounds declared on a type: `Annotated[float, Gt(0), Le(1)]`, also inside `X | None`."""
    if typing.get_origin(hint) is Annotated:
        items = [part for item in hint.__metadata__ for part in (item if isinstance(item, GroupedMetadata) else [item])]
        return tuple(item for item in items if isinstance(item, (Ge, Gt, Le, Lt)))
    if typing.get_origin(hint) in (Union, types.UnionType):
        return tuple(bound for arg in typing.get_args(hint) for bound in _bounds_of(arg))
    return ()


def _is_optional(hint: Any) -> bool:
    if typing.get_origin(hint) is Annotated:
        return _is_optional(typing.get_args(hint)[0])
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


def value_type_of(hint: Any) -> tuple[type, tuple[str, ...] | None]:
    """int, float or str (with its choices for a Literal) from a field's type hint."""
    if typing.get_origin(hint) is Annotated:
        return value_type_of(typing.get_args(hint)[0])
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
    return _specs_of_fields(context_class)


@functools.cache  # a class's fields do not change, and every SiftContext built reads them
def _specs_of_fields(context_class: type) -> tuple[SettingSpec, ...]:
    hints = typing.get_type_hints(context_class, include_extras=True)
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
                optional=_is_optional(hints[item.name]),
                bounds=_bounds_of(hints[item.name]),
            )
        )
    return tuple(specs)
