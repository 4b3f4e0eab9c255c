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

    def flags(self) -> str:
        """The `sift eval` flags that run it ("" for the paper's method)."""
        defaults = SiftContext()
        flags = {spec.name: spec.flag for spec in setting_specs()}
        given = [
            f"{flags[name]} {value}"
            for name, value in (("max_stage", self.max_stage), ("fallback_answer", self.fallback_answer))
            if value != getattr(defaults, name)
        ]
        return " ".join(given)


PAPER = Variant("the paper's method (3 stages, CoT fallback)", STAGES[-1], "cot", "stage 3")
VARIANTS = (
    PAPER,
    Variant("stage budget 2, CoT fallback", 2, "cot", "stage 2"),
    Variant("stage budget 1, CoT fallback", 1, "cot", "stage 1"),
    Variant("3 stages, query+sticker fallback", STAGES[-1], "query_sticker", "3 stages, QS fallback"),
    Variant("stage budget 2, query+sticker fallback", 2, "query_sticker", "2 stages, QS fallback"),
    Variant("stage budget 1, query+sticker fallback", 1, "query_sticker", "1 stage, QS fallback"),
)


def variant_rows(
    records: Sequence[Record], right: Grader, number_check_reruns: Sequence[Record] | None = None
) -> list[dict[str, Any]]:
    """CoT, then each variant: accuracy (Wilson 95%), calls and tokens per question, and
    the paired tests against CoT and the paper's method, over the first sample of every
    question (`right(gold, answer)` grades an answer the run did not grade); last, for
    records made without it, the number check put together from `number_check_reruns`
    (`number_check`; None: no such row)."""
    graded = [record for record in records if record["status"] == "ok" and int(record["sample"]) == 0]
    cot = [answer_at(record, 0)[1] for record in graded]
    paper = [answer_at(record, PAPER.max_stage, PAPER.fallback_answer, right)[1] for record in graded]
    rows = [{"variant": "CoT", "flags": "", **cost_cells(graded, 0, "cot"), **accuracy_cell(cot)}]
    for variant in VARIANTS:
        outcomes = [answer_at(record, variant.max_stage, variant.fallback_answer, right)[1] for record in graded]
        row = {
            "variant": variant.name,
            "label": variant.label,
            # With the CoT fallback a stage budget is a stage of the run: on its plotted line.
            "own_point": variant.fallback_answer != "cot",
            "flags": variant.flags(),
            **accuracy_cell(outcomes),
            **cost_cells(graded, variant.max_stage, variant.fallback_answer),
            "vs_cot": paired_against(cot, outcomes),
        }
        if variant != PAPER:
            row["vs_paper"] = paired_against(paper, outcomes)
        rows.append(row)
    if number_check_reruns is not None:
        rows.append(number_check_row(graded, number_check_reruns, right, cot, paper))
    return rows
