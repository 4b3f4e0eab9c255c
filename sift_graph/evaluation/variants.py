"""SIFT's variants that need no new model call, read off a result set's records: a
budget in stages (`max_stage`) and the query+sticker fallback (`fallback_answer`).

A record keeps every round SIFT ran (each with both predictions' answers) and the CoT
baseline's answer, so what a run with a smaller stage budget, or with the last round's
query+sticker prediction as its fallback, would have answered is already there: the
rounds up to the budget are the same calls. Costs count the same way as the paper's
columns (`summary.cost_at`): the calls up to the budget, plus the CoT call only where it
answered. Each variant is tested (exact McNemar) against CoT and against the paper's
method on the same questions. The number check (`sticker_check`) changes the stickers,
so it needs the questions where it changes one run again (`number_check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sift_graph.context import FallbackAnswer, SiftContext, setting_specs
from sift_graph.evaluation.number_check import number_check_row
from sift_graph.evaluation.records import STAGES
from sift_graph.evaluation.summary import Grader, accuracy_cell, answer_at, cost_cells, paired_against

Record = dict[str, Any]


@dataclass(frozen=True)
class Variant:
    name: str
    max_stage: int
    fallback_answer: FallbackAnswer
    label: str
    """Its point's label on the plot."""


PAPER = Variant("the paper's method (3 stages, CoT fallback)", STAGES[-1], "cot", "stage 3")
VARIANTS = (
    PAPER,
    Variant("stage budget 2, CoT fallback", 2, "cot", "stage 2"),
    Variant("stage budget 1, CoT fallback", 1, "cot", "stage 1"),
    Variant("3 stages, query+sticker fallback", STAGES[-1], "query_sticker", "3 stages, QS fallback"),
    Variant("stage budget 2, query+sticker fallback", 2, "query_sticker", "2 stages, QS fallback"),
    Variant("stage budget 1, query+sticker fallback", 1, "query_sticker", "1 stage, QS fallback"),
)
FALLBACK_NAMES: dict[str, str] = {"cot": "CoT", "query_sticker": "query+sticker"}


def stored_setting(config: dict[str, Any], name: str) -> Any:
    """A set's setting as run: a setting left at its default is not stored (`omit_default`)."""
    return config.get(name, getattr(SiftContext(), name))


def is_default(config: dict[str, Any], name: str) -> bool:
    return bool(stored_setting(config, name) == getattr(SiftContext(), name))


def stage_reached(config: dict[str, Any]) -> int:
    """The last stage a set's runs could reach (a stage budget is stored as the rounds it leaves)."""
    if stored_setting(config, "inverse_rounds"):
        return 3
    return 2 if stored_setting(config, "forward_rounds") else 1


def is_paper_method(config: dict[str, Any]) -> bool:
    """Whether a SIFT set ran the paper's method: its rounds, fallback and no sticker check."""
    return all(
        is_default(config, name) for name in ("forward_rounds", "inverse_rounds", "fallback_answer", "sticker_check")
    )


def variant_settings(config: dict[str, Any]) -> list[str]:
    """The variant settings a SIFT set ran with, in words ([] for the paper's method's)."""
    fallback = stored_setting(config, "fallback_answer")
    return [
        *([f"{FALLBACK_NAMES[fallback]} fallback"] if not is_default(config, "fallback_answer") else []),
        *(["number check"] if not is_default(config, "sticker_check") else []),
    ]


def variant_text(config: dict[str, Any], before: str) -> str:
    """The variant settings a SIFT set ran with, after `before`, for its title ("" for the
    paper's method)."""
    settings = variant_settings(config)
    return before + ", ".join(settings) if settings else ""


def variants_of(config: dict[str, Any]) -> tuple[Variant, list[Variant]]:
    """(the set's own run, the variants its records answer): every stage budget up to the
    stage it reached, with either fallback. For the paper's method, `PAPER` and `VARIANTS`;
    for another set, the same grid named with its settings (a number-check set's variants
    keep the check)."""
    reached, own_fallback = stage_reached(config), stored_setting(config, "fallback_answer")
    if is_paper_method(config):
        return PAPER, list(VARIANTS[1:])
    check = "" if is_default(config, "sticker_check") else ", number check"

    def named(stage: int, fallback: FallbackAnswer, label: str) -> Variant:
        stages = f"{stage} stage{'s' if stage > 1 else ''}" if stage == reached else f"stage budget {stage}"
        return Variant(f"{stages}, {FALLBACK_NAMES[fallback]} fallback{check}", stage, fallback, label + check)

    own = named(reached, own_fallback, f"stage {reached}")
    grid = [
        named(variant.max_stage, variant.fallback_answer, variant.label)
        for variant in VARIANTS
        if variant.max_stage <= reached and (variant.max_stage, variant.fallback_answer) != (reached, own_fallback)
    ]
    return Variant(f"this set's run ({own.name})", own.max_stage, own.fallback_answer, own.label), grid


def added_flags(variant: Variant, own: Variant) -> str:
    """The flags to add to the set's own `sift eval` command to run `variant` ("" for itself)."""
    flags = {spec.name: spec.flag for spec in setting_specs()}
    given = [
        f"{flags[name]} {getattr(variant, name)}"
        for name in ("max_stage", "fallback_answer")
        if getattr(variant, name) != getattr(own, name)
    ]
    return " ".join(given)


def variant_rows(
    records: Sequence[Record],
    right: Grader,
    number_check_reruns: Sequence[Record] | None = None,
    config: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """CoT, the set's own run, then each variant its records answer (`variants_of` the
    set's `config`, the paper's method's by default): accuracy (Wilson 95%), calls and
    tokens per question, the flags to add to the set's command, and the paired tests
    against CoT and the set's own run (`vs_paper`), over the first sample of every question
    (`right(gold, answer)` grades an answer the run did not grade); last, for a set of the
    paper's method, the number check put together from `number_check_reruns`
    (`number_check`; None: no such row)."""
    own, variants = variants_of(config or {})
    graded = [record for record in records if record["status"] == "ok" and int(record["sample"]) == 0]
    cot = [answer_at(record, 0)[1] for record in graded]
    reference = [answer_at(record, own.max_stage, own.fallback_answer, right)[1] for record in graded]
    rows = [{"variant": "CoT", "flags": "", **cost_cells(graded, 0, "cot"), **accuracy_cell(cot)}]
    for variant in (own, *variants):
        outcomes = [answer_at(record, variant.max_stage, variant.fallback_answer, right)[1] for record in graded]
        row = {
            "variant": variant.name,
            "label": variant.label,
            # A variant with the set's fallback is a stage of its run: on its plotted line.
            "own_point": variant.fallback_answer != own.fallback_answer,
            "flags": added_flags(variant, own),
            **accuracy_cell(outcomes),
            **cost_cells(graded, variant.max_stage, variant.fallback_answer),
            "vs_cot": paired_against(cot, outcomes),
        }
        if variant == own:
            row["reference"] = True
        else:
            row["vs_paper"] = paired_against(reference, outcomes)
        rows.append(row)
    if number_check_reruns is not None and own == PAPER:
        rows.append(number_check_row(graded, number_check_reruns, right, cot, reference))
    return rows
