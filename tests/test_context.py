"""`SiftContext` is the one definition of a run setting: the CLI flags, the settings
stored for `--resume` and the evaluation digest are all derived from its fields."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated

import pytest
from annotated_types import Ge, Le
from pydantic import TypeAdapter

from sift_graph import SiftContext
from sift_graph.cli.common import ArgumentParser, UsageError, add_model_arguments, context_from_args
from sift_graph.context import MAX_ROUNDS, run_settings, setting_specs
from sift_graph.evaluation.results import EvalConfig


@dataclass(kw_only=True)
class ExtendedContext(SiftContext):
    """What a contributor adds: one field, nothing else."""

    beam_width: int = field(default=1, metadata={"description": "beams per model call", "scope": "run"})


def parser_for(context_class: type[SiftContext], *, resumable: bool = False) -> ArgumentParser:
    parser = ArgumentParser(prog="test")
    add_model_arguments(parser, resumable=resumable, context_class=context_class)
    return parser


def test_a_new_field_reaches_the_cli_the_resume_settings_and_the_digest():
    args = parser_for(ExtendedContext).parse_args(["--beam-width", "3", "--max-tokens", "64"])
    context = context_from_args(args, context_class=ExtendedContext)
    assert (context.beam_width, context.max_tokens) == (3, 64)

    stored = context.stored_settings()
    assert stored["beam_width"] == 3
    resumed = context_from_args(parser_for(ExtendedContext, resumable=True).parse_args([]), stored, ExtendedContext)
    assert resumed.beam_width == 3 and resumed.max_tokens == 64
    overridden = context_from_args(
        parser_for(ExtendedContext, resumable=True).parse_args(["--beam-width", "5"]), stored, ExtendedContext
    )
    assert overridden.beam_width == 5 and overridden.max_tokens == 64

    assert EvalConfig.from_context(context).as_dict()["beam_width"] == 3
    assert EvalConfig.from_context(context).digest() != EvalConfig.from_context(ExtendedContext(max_tokens=64)).digest()


def test_the_flags_keep_their_names():
    flags = {spec.flag for spec in setting_specs()}
    assert flags == {
        "--model", "--base-url", "--api-key", "--timeout", "--max-tokens", "--temperature", "--top-p",
        "--forward-rounds", "--inverse-rounds", "--comparator", "--seed", "--cache", "--dtype", "--partials",
        "--continuation", "--max-stage", "--fallback-answer", "--sticker-check",
    }  # fmt: skip
    help_text = parser_for(SiftContext).format_help()
    assert "new-token limit of every model call (default 1024)" in help_text


def test_the_api_key_is_never_stored_nor_part_of_a_digest():
    context = SiftContext(model="openai:m", base_url="http://127.0.0.1:9/v1", api_key="sk-secret")
    assert "api_key" not in context.stored_settings()
    assert "api_key" not in EvalConfig.from_context(context).as_dict()
    assert "sk-secret" not in repr(context)


def test_what_cannot_change_an_answer_is_left_out_of_the_digest():
    base = EvalConfig.from_context(SiftContext()).digest()
    assert EvalConfig.from_context(SiftContext(request_timeout=5)).digest() == base
    assert EvalConfig.from_context(SiftContext(top_p=0.9)).digest() == base  # greedy: top_p does nothing
    assert EvalConfig.from_context(SiftContext(temperature=0)).digest() == base  # 0 and 0.0 are one setting
    assert EvalConfig.from_context(SiftContext(temperature=0.6, top_p=0.9)).digest() != base


def test_stored_settings_from_an_earlier_version_still_resume():
    context = SiftContext.from_settings({"timeout": 30.0, "max_tokens": 7})
    assert (context.request_timeout, context.max_tokens) == (30.0, 7)


def test_an_unknown_stored_or_json_setting_is_named():
    with pytest.raises(ValueError, match=r"^beam_width: not a SIFT setting"):
        SiftContext.from_settings({"beam_width": 2})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["temperature", "top_p", "request_timeout"])
def test_non_finite_numbers_are_rejected(name, value):
    with pytest.raises(ValueError, match=rf"^{name}: expected a number .*, got {value!r}$"):
        SiftContext(**{name: value})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"forward_rounds": 17}, "forward_rounds: expected an integer in [0, 16], got 17"),
        ({"inverse_rounds": -1}, "inverse_rounds: expected an integer in [0, 16], got -1"),
        ({"max_stage": 0}, "max_stage: expected an integer in [1, 3], got 0"),
        ({"max_stage": 2.0}, "max_stage: expected an integer in [1, 3], got 2.0"),
        ({"max_tokens": True}, "max_tokens: expected an integer >= 1, got True"),
        ({"temperature": 2.5}, "temperature: expected a number in [0, 2], got 2.5"),
        ({"top_p": 0}, "top_p: expected a number in (0, 1] or None, got 0"),
        ({"request_timeout": "5"}, "request_timeout: expected a number > 0, got '5'"),
        ({"seed": 1.5}, "seed: expected an integer or None, got 1.5"),
    ],
)
def test_the_bounds_declared_on_a_field_are_checked_naming_it(settings, message):
    with pytest.raises(ValueError) as raised:
        SiftContext(**settings)
    assert str(raised.value) == message


def test_a_bound_on_a_new_field_is_checked_too():
    @dataclass(kw_only=True)
    class Beams(SiftContext):
        beam_width: Annotated[int, Ge(1), Le(8)] = field(default=1, metadata={"description": "beams", "scope": "run"})

    assert Beams(beam_width=8).beam_width == 8
    with pytest.raises(ValueError, match=r"^beam_width: expected an integer in \[1, 8\], got 9$"):
        Beams(beam_width=9)


def test_the_bounds_are_in_the_context_json_schema():
    properties = TypeAdapter(SiftContext).json_schema()["properties"]
    assert (properties["forward_rounds"]["minimum"], properties["forward_rounds"]["maximum"]) == (0, MAX_ROUNDS)
    assert properties["top_p"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
    assert properties["request_timeout"]["exclusiveMinimum"] == 0


def test_the_dtype_reaches_the_loader_and_the_digest():
    context = context_from_args(parser_for(SiftContext).parse_args(["--dtype", "float32"]))
    assert context.load_options.dtype == "float32"
    assert EvalConfig.from_context(context).digest() != EvalConfig.from_context(SiftContext()).digest()
    served = SiftContext(model="openai:m", base_url="http://127.0.0.1:1/v1")
    assert "dtype" not in served.result_settings()  # a served model is not loaded here
    assert (
        EvalConfig.from_context(dataclasses.replace(served, dtype="float32")).digest()
        == EvalConfig.from_context(served).digest()
    )
    with pytest.raises(ValueError, match=r"^dtype: expected 'auto', 'bfloat16' or 'float32', got 'fp16'"):
        SiftContext(dtype="fp16")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"--dtype"):
        parser_for(SiftContext).parse_args(["--dtype", "fp16"])


def test_a_bad_flag_value_is_one_usage_error():
    args = parser_for(SiftContext).parse_args(["--max-tokens", "0"])
    with pytest.raises(UsageError, match=r"^max_tokens: expected an integer >= 1, got 0"):
        context_from_args(args)


def test_every_field_declares_its_scope_explicitly():
    for item in dataclasses.fields(SiftContext):
        assert item.metadata.get("scope") in ("deployment", "run"), item.name


def test_a_field_without_a_scope_is_refused_naming_it():
    @dataclass(kw_only=True)
    class Unscoped(SiftContext):
        beams: int = field(default=1, metadata={"description": "beams per model call"})

    with pytest.raises(TypeError, match=r"^beams: a SiftContext field declares its scope"):
        setting_specs(Unscoped)


def test_the_scope_split():
    deployment = {spec.name for spec in setting_specs() if spec.deployment}
    assert deployment == {
        "model",
        "dtype",
        "base_url",
        "api_key",
        "cache",
        "request_timeout",
        "partials",
        "continuation",
    }
    assert set(run_settings(SiftContext())) == {
        "forward_rounds", "inverse_rounds", "max_stage", "fallback_answer", "sticker_check",
        "max_tokens", "temperature", "top_p", "seed", "comparator",
    }  # fmt: skip
    context = SiftContext(model="openai:m", base_url="http://127.0.0.1:1/v1", max_tokens=64, seed=3)
    assert run_settings(context)["max_tokens"] == 64 and "base_url" not in run_settings(context)


@pytest.mark.parametrize("api_key", [5, b"key", "", ["k"]])
def test_a_bad_api_key_is_refused_naming_the_field(api_key):
    with pytest.raises(ValueError, match=r"^api_key: expected a non-empty string or None"):
        SiftContext(api_key=api_key)
