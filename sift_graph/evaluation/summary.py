"""From stored records to the paper's numbers: small pure functions.

The paper's "after stage k" accuracy: a question SIFT answered by consensus at stage k
or earlier counts with SIFT's answer; any other question counts with the zero-shot CoT
baseline's answer. Its cost is counted the same way: SIFT's calls up to stage k, plus the
baseline's call for a question that had not agreed by then (the answer it is graded on
came from that call). After the last stage this is what SIFT itself does: its fallback is
the baseline prompt.

A result set run with `fallback_answer="query_sticker"` falls back to the last round's
query+sticker prediction instead, with no call of its own: its "after stage k" counts
the last such prediction up to stage k (`answer_at`'s `fallback`).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sift_graph.answers import Comparator, answers_agree
from sift_graph.context import FallbackAnswer
from sift_graph.evaluation.diagnostics import diagnose
from sift_graph.evaluation.records import FALLBACK, STAGE_OF_ROUND_KIND, STAGES
from sift_graph.evaluation.stats import discordant_pairs, majority_vote, mcnemar_exact, wilson_interval

COLUMNS = ("cot", "stage1", "stage2", "stage3")
COLUMN_LABELS = {"cot": "CoT", "stage1": "stage 1", "stage2": "stage 2", "stage3": "stage 3"}
Record = dict[str, Any]
Grader = Callable[[str | None, str | None], bool]
"""right(gold, answer): whether an answer is right."""


def column_stage(column: str) -> int:
    """0 for the CoT baseline, k for "after stage k"."""
    return 0 if column == "cot" else int(column.removeprefix("stage"))


def agreed_by(record: Record, stage: int) -> bool:
    exited = record["sift"]["exit_stage"]
    return exited is not None and exited <= stage


def last_query_sticker_answer(record: Record, stage: int) -> str | None:
    """The query+sticker prediction's answer of the last round up to `stage` (None
    without one: a record of an earlier version keeps no rounds)."""
    rounds = [
        detail
        for detail in record.get("rounds") or []
        if "answers" in detail and STAGE_OF_ROUND_KIND[detail["kind"]] <= stage
    ]
    return rounds[-1]["answers"][1] if rounds else None


def answer_at(
    record: Record, stage: int, fallback: FallbackAnswer = "cot", right: Grader = answers_agree
) -> tuple[str | None, bool]:
    """(answer, correct) counted after `stage` (0: the CoT baseline), a question not
    settled by then falling back to `fallback` (`right` grades a query+sticker answer)."""
    if stage > 0 and agreed_by(record, stage):
        return record["sift"]["answer"], bool(record["sift"]["correct"])
    if stage > 0 and fallback == "query_sticker":
        answer = last_query_sticker_answer(record, stage)
        return answer, right(record.get("gold"), answer)
    return record["cot"]["answer"], bool(record["cot"]["correct"])


def cost_at(record: Record, stage: int, fallback: FallbackAnswer = "cot") -> tuple[int, int]:
    """(model calls, input + output tokens) spent to have the answer of `answer_at`."""
    parts = [record["stage_costs"][str(k)] for k in STAGES if k <= stage]
    if stage == 0 or (fallback == "cot" and not agreed_by(record, stage)):
        parts.append(record["cot"])
    calls = sum(part["calls"] for part in parts)
    tokens = sum(part["input_tokens"] + part["output_tokens"] for part in parts)
    return calls, tokens


def exit_counts(records: Sequence[Record]) -> dict[str, dict[str, int]]:
    """Per exit (a consensus at stage k, or the fallback): the questions that stopped
    there, and how many of them SIFT answered right (how far an agreement can be trusted)."""
    counts = {key: {"questions": 0, "right": 0} for key in (*(str(stage) for stage in STAGES), FALLBACK)}
    for record in records:
        exited = record["sift"]["exit_stage"]
        cell = counts[FALLBACK if exited is None else str(exited)]
        cell["questions"] += 1
        cell["right"] += bool(record["sift"]["correct"])
    return counts


def shares_of(exits: dict[str, dict[str, int]]) -> dict[str, float]:
    """Each exit's share of the questions, from `exit_counts`."""
    total = sum(cell["questions"] for cell in exits.values())
    return {key: (cell["questions"] / total if total else 0.0) for key, cell in exits.items()}


def accuracy_cell(outcomes: Sequence[bool]) -> dict[str, Any]:
    correct, n = sum(outcomes), len(outcomes)
    low, high = wilson_interval(correct, n)
    return {"correct": correct, "n": n, "accuracy": correct / n if n else None, "ci95": [low, high]}


def paired_test(first: Sequence[bool], second: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar of `second` (SIFT) against `first` (CoT) on the same questions."""
    only_first, only_second = discordant_pairs(first, second)
    return {"cot_only": only_first, "sift_only": only_second, "p_value": mcnemar_exact(only_first, only_second)}


def paired_against(reference: Sequence[bool], outcomes: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar of `outcomes` against `reference` on the same questions: the
    questions only this one got right, those only the reference got right, p."""
    reference_only, this_only = discordant_pairs(reference, outcomes)
    return {
        "this_only": this_only,
        "reference_only": reference_only,
        "p_value": mcnemar_exact(this_only, reference_only),
    }


def single_run_summary(
    records: Sequence[Record], fallback: FallbackAnswer = "cot", right: Grader = answers_agree
) -> dict[str, Any]:
    """Accuracy (Wilson 95%), cost per question and McNemar vs CoT for each column."""
    columns: dict[str, Any] = {}
    cot_outcomes = [answer_at(record, 0)[1] for record in records]
    for column in COLUMNS:
        stage = column_stage(column)
        outcomes = [answer_at(record, stage, fallback, right)[1] for record in records]
        costs = [cost_at(record, stage, fallback) for record in records]
        columns[column] = {
            **accuracy_cell(outcomes),
            "calls_per_question": statistics.fmean(c for c, _ in costs) if costs else None,
            "tokens_per_question": statistics.fmean(t for _, t in costs) if costs else None,
        }
        if stage > 0:
            columns[column]["vs_cot"] = paired_test(cot_outcomes, outcomes)
    return columns


def by_sample(records: Sequence[Record]) -> dict[int, list[Record]]:
    groups: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        groups[int(record["sample"])].append(record)
    return dict(sorted(groups.items()))


def majority_summary(records: Sequence[Record], samples: int, same: Callable[[str, str], bool]) -> dict[str, Any]:
    """CoT self-consistency and SIFT + majority vote over `samples` runs per question.

    Only questions with all `samples` runs finished are voted on. The vote is over the
    answers counted after the last stage; a question's cost is the sum over its runs.
    """
    per_question: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        per_question[record["id"]].append(record)
    complete = [sorted(group, key=lambda r: r["sample"]) for group in per_question.values() if len(group) == samples]
    voted: dict[str, list[bool]] = {"cot": [], "sift": []}
    tokens: dict[str, list[int]] = {"cot": [], "sift": []}
    for group in complete:
        for method, stage in (("cot", 0), ("sift", STAGES[-1])):
            picked = majority_vote([answer_at(record, stage)[0] for record in group], same)
            voted[method].append(picked is not None and answer_at(group[picked], stage)[1])
            tokens[method].append(sum(cost_at(record, stage)[1] for record in group))
    return {
        "questions": len(complete),
        "cot": {
            **accuracy_cell(voted["cot"]),
            "tokens_per_question": statistics.fmean(tokens["cot"]) if complete else None,
        },
        "sift": {
            **accuracy_cell(voted["sift"]),
            "tokens_per_question": statistics.fmean(tokens["sift"]) if complete else None,
            "vs_cot": paired_test(voted["cot"], voted["sift"]),
        },
    }


def wall_time(records: Sequence[Record]) -> float:
    """Seconds the eval runs took: per invocation, from its start to its last record.
    Robust to kill -9: each record carries its invocation's id and start time."""
    sessions: dict[str, tuple[float, float]] = {}
    for record in records:
        session, started, finished = record.get("session"), record.get("session_started"), record.get("finished_at")
        if session is None or started is None or finished is None:
            continue
        _, latest = sessions.get(session, (started, started))
        sessions[session] = (started, max(latest, finished))
    return sum(finished - started for started, finished in sessions.values())


def total_saved_calls(records: Sequence[Record]) -> dict[str, int]:
    """Calls served without a request over the records (records of earlier versions
    have no count: none)."""
    saved = [record.get("saved_calls") or {} for record in records]
    return {kind: sum(int(counts.get(kind, 0)) for counts in saved) for kind in ("reused", "from_cache")}


def summarize(
    records: Sequence[Record], comparator: Comparator = "math", fallback: FallbackAnswer = "cot"
) -> dict[str, Any]:
    """The numbers of one result set (see the module docstring for what each means)."""
    same = partial(answers_agree, comparator=comparator)
    ok = [record for record in records if record["status"] == "ok"]
    errors = [record for record in records if record["status"] != "ok"]
    runs = by_sample(ok)
    samples = max(runs) + 1 if runs else 1
    exits = exit_counts(ok)
    summary: dict[str, Any] = {
        "questions": len({record["id"] for record in ok}),
        "samples": samples,
        "graded": len(ok),
        "errors": len(errors),
        "error_examples": sorted({record["error"] for record in errors})[:3],
        "exit_shares": shares_of(exits),
        "exits": exits,
        "wall_seconds": wall_time(records),
        "saved_calls": total_saved_calls(ok),
        "diagnostics": diagnose(ok, same),
    }
    if samples == 1:
        summary["columns"] = single_run_summary(ok, fallback, same)
        return summary
    per_run = {sample: single_run_summary(group, fallback, same) for sample, group in runs.items()}
    columns = {}
    for column in COLUMNS:
        accuracies = [run[column]["accuracy"] for run in per_run.values() if run[column]["n"]]
        columns[column] = {
            "accuracy": statistics.fmean(accuracies) if accuracies else None,
            "range": [min(accuracies), max(accuracies)] if accuracies else None,
            "runs": len(accuracies),
            "n": sum(run[column]["n"] for run in per_run.values()),
            "calls_per_question": statistics.fmean(run[column]["calls_per_question"] for run in per_run.values()),
            "tokens_per_question": statistics.fmean(run[column]["tokens_per_question"] for run in per_run.values()),
        }
    summary["columns"] = columns
    summary["majority"] = majority_summary(ok, samples, same)
    return summary


def cost_cells(records: Sequence[Record], stage: int, fallback: FallbackAnswer) -> dict[str, float | None]:
    costs = [cost_at(record, stage, fallback) for record in records]
    return {
        "calls_per_question": statistics.fmean(calls for calls, _ in costs) if costs else None,
        "tokens_per_question": statistics.fmean(tokens for _, tokens in costs) if costs else None,
    }
