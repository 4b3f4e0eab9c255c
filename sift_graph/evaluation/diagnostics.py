"""How SIFT's runs went, from stored records: small pure functions.

Counts a report prints beside the accuracy table, to read where SIFT wins and loses:
refinements that changed nothing, malformed stickers, stickers with numbers the question
does not have (invented facts), predictions cut off at the token limit, agreement on a
wrong answer, and how each prediction would have fared on its own. Records of earlier
versions lack the round details: they count as none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sift_graph.answers import answers_agree

# The number check lives with the sticker (SIFT can run it too); still importable from here.
from sift_graph.sticker import conditions_of as conditions_of
from sift_graph.sticker import invented_numbers as invented_numbers
from sift_graph.sticker import numbers_in as numbers_in

Record = dict[str, Any]
Grader = Callable[[str | None, str | None], bool]


def _rounds(records: Iterable[Record]) -> Iterable[tuple[Record, Record, Record | None]]:
    """(record, round, previous round) for every round with details."""
    for record in records:
        previous = None
        for detail in record.get("rounds") or []:
            if "sticker" in detail:
                yield record, detail, previous
            previous = detail


def sticker_diagnostics(records: Sequence[Record]) -> dict[str, dict[str, int]]:
    """Per round kind: rounds, malformed stickers, stickers left unchanged by their
    refinement, stickers with invented numbers; for inverse rounds also the drafts."""
    counts: dict[str, Counter[str]] = {}
    for record, detail, previous in _rounds(records):
        kind = counts.setdefault(detail["kind"], Counter())
        kind["rounds"] += 1
        kind["malformed"] += bool(detail["sticker_problems"])
        question = record.get("question") or ""
        kind["invented_numbers"] += bool(question and invented_numbers(detail["sticker"], question))
        if previous is not None and "sticker" in previous:
            kind["unchanged"] += detail["sticker"] == previous["sticker"]
        if detail.get("draft") is not None:
            kind["draft_malformed"] += bool(detail["draft_problems"])
            kind["draft_invented_numbers"] += bool(question and invented_numbers(detail["draft"], question))
    return {kind: dict(count) for kind, count in counts.items()}


def prediction_diagnostics(records: Sequence[Record]) -> dict[str, int]:
    """Predictions made, cut off at the token limit, without an answer, served again
    (a repeated round); CoT solutions cut off; rounds that agreed on a wrong answer."""
    counts: Counter[str] = Counter()
    for record, detail, _ in _rounds(records):
        counts["predictions"] += 2
        counts["truncated"] += sum(detail["truncated"])
        counts["no_answer"] += sum(answer is None for answer in detail["answers"])
        counts["repeated"] += sum(detail.get("repeated", []))
        agreed_wrong = detail["agreed"] and record["sift"]["consensus_round"] == detail["round"]
        counts["agreed_on_a_wrong_answer"] += bool(agreed_wrong and not record["sift"]["correct"])
    for record in records:
        counts["cot_truncated"] += bool(record["cot"].get("truncated"))
    return dict(counts)


def lone_predictions(records: Sequence[Record], right: Grader) -> dict[str, int]:
    """How each prediction would have fared on its own, graded against the gold answer
    with `right(gold, answer)`: round 1's sticker-only (P_S) and query + sticker (P_QS)
    predictions beside CoT; and, on the questions no round settled, the last round's
    P_QS beside the CoT fallback that answered instead."""
    counts: Counter[str] = Counter()
    for record in records:
        rounds = [detail for detail in record.get("rounds") or [] if "answers" in detail]
        if not rounds:
            continue
        gold, cot_right = record.get("gold"), bool(record["cot"]["correct"])
        sticker_only, query_sticker = rounds[0]["answers"]
        counts["questions"] += 1
        counts["sticker_only"] += right(gold, sticker_only)
        counts["query_sticker"] += right(gold, query_sticker)
        counts["cot"] += cot_right
        if record["sift"]["consensus_round"] is None:
            counts["unsettled"] += 1
            counts["unsettled_last_query_sticker"] += right(gold, rounds[-1]["answers"][1])
            counts["unsettled_cot"] += cot_right
    return dict(counts)


def outcomes(records: Sequence[Record]) -> dict[str, list[str]]:
    """Question ids by how SIFT (its final answer) and CoT fared: where SIFT wins and loses."""
    groups: dict[str, list[str]] = {"sift_only": [], "cot_only": [], "both": [], "neither": []}
    for record in records:
        sift, cot = bool(record["sift"]["correct"]), bool(record["cot"]["correct"])
        key = "both" if sift and cot else "sift_only" if sift else "cot_only" if cot else "neither"
        groups[key].append(str(record["id"]))
    return groups


def diagnose(records: Sequence[Record], right: Grader = answers_agree) -> dict[str, Any]:
    """Every count above over the graded records (`right(gold, answer)` grades a lone
    prediction; the math comparator unless the result set names another)."""
    ok = [record for record in records if record["status"] == "ok"]
    return {
        "stickers": sticker_diagnostics(ok),
        "predictions": prediction_diagnostics(ok),
        "lone_predictions": lone_predictions(ok, right),
        "outcomes": outcomes(ok),
    }
