"""The question list and the comparison of two result sets: small pure functions over
stored records. Outcomes, flags and exits are what `sift report` counts
(`evaluation.diagnostics`, `evaluation.summary`), read here one record at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sift_graph.evaluation.diagnostics import outcomes, prediction_diagnostics, sticker_diagnostics
from sift_graph.evaluation.records import FALLBACK, STAGES
from sift_graph.evaluation.stats import discordant_pairs, mcnemar_exact
from sift_graph.evaluation.summary import answer_at

Record = dict[str, Any]
Row = dict[str, Any]

OUTCOME_LABELS = {
    "sift_only": "SIFT only right",
    "cot_only": "CoT only right",
    "both": "both right",
    "neither": "neither right",
}
EXIT_LABELS = {**{str(stage): f"stage {stage}" for stage in STAGES}, FALLBACK: "fallback"}
FLAG_LABELS = {
    "truncated": "cut off at the token limit",
    "malformed": "malformed sticker",
    "unchanged": "sticker unchanged by its refinement",
    "invented": "numbers the question does not state",
}
SORTS = {"tokens": "SIFT tokens, most first", "tokens-asc": "SIFT tokens, fewest first"}


def outcome_of(record: Record) -> str:
    """sift_only, cot_only, both or neither (`diagnostics.outcomes` of this record)."""
    return next(key for key, ids in outcomes([record]).items() if ids)


def exit_of(record: Record) -> str:
    """Where SIFT stopped: "1", "2", "3" (a consensus at that stage) or "fallback"."""
    exited = record["sift"]["exit_stage"]
    return FALLBACK if exited is None else str(exited)


def flags_of(record: Record) -> list[str]:
    """What `sift report`'s diagnostics count against this record, by FLAG_LABELS key."""
    stickers = sticker_diagnostics([record]).values()
    predictions = prediction_diagnostics([record])
    found = {
        "truncated": bool(predictions.get("truncated") or predictions.get("cot_truncated")),
        "malformed": any(counts.get("malformed") or counts.get("draft_malformed") for counts in stickers),
        "unchanged": any(counts.get("unchanged") for counts in stickers),
        "invented": any(counts.get("invented_numbers") or counts.get("draft_invented_numbers") for counts in stickers),
    }
    return [flag for flag in FLAG_LABELS if found[flag]]


def tokens_of(method: Mapping[str, Any]) -> int:
    return int(method["input_tokens"]) + int(method["output_tokens"])


def record_key(record: Record) -> str:
    """A record's id on a page: the question id, and the sample when there are several."""
    return str(record["id"]) if int(record["sample"]) == 0 else f"{record['id']}~{record['sample']}"


def question_row(record: Record) -> Row:
    """One line of the question list (a finished record)."""
    return {
        "key": record_key(record),
        "id": str(record["id"]),
        "sample": int(record["sample"]),
        "question": str(record.get("question") or ""),
        "gold": record.get("gold"),
        "sift": {"answer": record["sift"]["answer"], "correct": bool(record["sift"]["correct"])},
        "cot": {"answer": record["cot"]["answer"], "correct": bool(record["cot"]["correct"])},
        "outcome": outcome_of(record),
        "exit": exit_of(record),
        "flags": flags_of(record),
        "sift_tokens": tokens_of(record["sift"]),
        "cot_tokens": tokens_of(record["cot"]),
    }


def question_rows(records: Sequence[Record]) -> list[Row]:
    """The list's rows, one per finished record, in the order the records were stored."""
    return [question_row(record) for record in records if record["status"] == "ok"]


def filter_rows(
    rows: Sequence[Row], *, outcome: str | None = None, exit: str | None = None, flag: str | None = None
) -> list[Row]:
    """The rows with that outcome, exit and flag (None: any)."""
    return [
        row
        for row in rows
        if (outcome is None or row["outcome"] == outcome)
        and (exit is None or row["exit"] == exit)
        and (flag is None or flag in row["flags"])
    ]


def sort_rows(rows: Sequence[Row], sort: str | None) -> list[Row]:
    """By SIFT's tokens (SORTS), else as stored."""
    if sort not in SORTS:
        return list(rows)
    return sorted(rows, key=lambda row: row["sift_tokens"], reverse=sort == "tokens")


def counts_by(rows: Sequence[Row], field: str, keys: Sequence[str]) -> dict[str, int]:
    """How many rows have each value of `field` (each flag, for "flags")."""
    if field == "flags":
        return {key: sum(key in row["flags"] for row in rows) for key in keys}
    return {key: sum(row[field] == key for row in rows) for key in keys}


COMPARED = {"sift": "SIFT's answer", "cot": "the CoT baseline's answer"}


def compare_records(first: Sequence[Record], second: Sequence[Record], method: str = "sift") -> dict[str, Any]:
    """Two result sets question by question, on the (question, sample) pairs both
    finished: `method`'s answer in each (SIFT's after the last stage, or CoT's), the
    paired counts and the exact McNemar test between the two."""
    stage = STAGES[-1] if method == "sift" else 0
    theirs = {(r["id"], r["sample"]): r for r in second if r["status"] == "ok"}
    pairs = [
        (r, theirs[(r["id"], r["sample"])]) for r in first if r["status"] == "ok" and (r["id"], r["sample"]) in theirs
    ]
    rows: list[Row] = []
    first_right: list[bool] = []
    second_right: list[bool] = []
    for mine, other in pairs:
        (answer_a, right_a), (answer_b, right_b) = answer_at(mine, stage), answer_at(other, stage)
        rows.append(
            {
                "key": record_key(mine),
                "question": str(mine.get("question") or ""),
                "gold": mine.get("gold"),
                "first": {"answer": answer_a, "correct": right_a, "tokens": tokens_of(mine[method])},
                "second": {"answer": answer_b, "correct": right_b, "tokens": tokens_of(other[method])},
                "differ": right_a != right_b,
            }
        )
        first_right.append(right_a)
        second_right.append(right_b)
    only_first, only_second = discordant_pairs(first_right, second_right)
    both = sum(a and b for a, b in zip(first_right, second_right, strict=True))
    return {
        "rows": rows,
        "paired": len(rows),
        "counts": {
            "both": both,
            "first_only": only_first,
            "second_only": only_second,
            "neither": len(rows) - both - only_first - only_second,
        },
        "p_value": mcnemar_exact(only_first, only_second),
    }
