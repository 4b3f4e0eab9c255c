"""The number check (`sticker_check="numbers"`) measured against a run of the paper's
method by rerunning only the questions it changes.

The check runs in code after each forward optimization and changes nothing but the
sticker it drops conditions from. Where it would drop none of a run's forward-optimized
stickers, a run with the check makes exactly the run's calls (same prompts, greedy
decoding) and gives its answer; so only the questions where it drops a condition need
the model again. `number_check_row` names them, `sift eval --sticker-check numbers --ids ...`
reruns them into a result set of their own, and `number_check_row` puts the variant
together: the rerun's record where the check changes a sticker, the paper run's record
elsewhere (read off, no new call), tested against CoT and the paper's method on the same
questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sift_graph.evaluation.records import question_key
from sift_graph.evaluation.results import ResultSet
from sift_graph.evaluation.summary import Grader, accuracy_cell, answer_at, cost_cells, paired_against
from sift_graph.sticker import parse_sticker, without_invented_conditions

Record = dict[str, Any]

NAME = "3 stages, number check"
FLAGS = "--sticker-check numbers"
LABEL = "3 stages, number check"


def first_checked_round(record: Record) -> int | None:
    """The index of the first round whose forward-optimized sticker the check would change
    (it drops a condition), None if none (round 1's sticker is not forward-optimized: the
    check never touches it; a round whose sticker the record does not keep has none)."""
    for index, sift_round in enumerate(record["rounds"]):
        if sift_round["kind"] == "sticker" or sift_round.get("sticker") is None:
            continue
        sticker = parse_sticker(sift_round["sticker"])
        if without_invented_conditions(sticker, record["question"])["conditions"] != sticker["conditions"]:
            return index
    return None


def changed_by_number_check(record: Record) -> bool:
    return first_checked_round(record) is not None


def same_before_check(record: Record, rerun: Record) -> bool:
    """Whether the rerun made the run's rounds up to the check's first change (the same
    stickers and answers): greedy decoding reproduced the calls the variant shares."""
    shared = first_checked_round(record) or 0
    return rounds_made(record, shared) == rounds_made(rerun, shared)


def rounds_made(record: Record, count: int) -> list[tuple[str | None, list[str]]]:
    """The first `count` rounds' stickers and answers."""
    return [(sift_round.get("sticker"), sift_round["answers"]) for sift_round in record["rounds"][:count]]


def is_number_check_of(candidate: ResultSet, paper: ResultSet) -> bool:
    """Whether `candidate` is the paper run with the number check on: same dataset and
    every setting the same but `sticker_check`."""
    if candidate.dataset != paper.dataset or candidate.config.get("sticker_check") != "numbers":
        return False
    if paper.config.get("sticker_check", "none") != "none":
        return False
    return without_sticker_check(candidate.config) == without_sticker_check(paper.config)


def without_sticker_check(config: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in config.items() if name != "sticker_check"}


def number_check_row(
    records: Sequence[Record], reruns: Sequence[Record], right: Grader, cot: Sequence[bool], paper: Sequence[bool]
) -> dict[str, Any]:
    """The variant's row over `records` (the paper run's graded first samples, in order;
    `cot` and `paper` their outcomes): complete when `reruns` holds every question the
    check changes, else the ids still to rerun and no accuracy."""
    rerun_of = {question_key(r): r for r in reruns if r["status"] == "ok" and int(r["sample"]) == 0}
    changed = [record for record in records if changed_by_number_check(record)]
    needed = [str(record["id"]) for record in changed]
    missing = [str(record["id"]) for record in changed if question_key(record) not in rerun_of]
    done = [record for record in changed if question_key(record) in rerun_of]
    row: dict[str, Any] = {"variant": NAME, "label": LABEL, "own_point": True, "flags": FLAGS}
    row["rerun"] = {
        "needed": needed,
        "missing": missing,
        "same_before_check": sum(same_before_check(record, rerun_of[question_key(record)]) for record in done),
    }
    if missing:
        return row
    changed_keys = {question_key(record) for record in changed}
    used = [rerun_of[key] if (key := question_key(record)) in changed_keys else record for record in records]
    outcomes = [answer_at(record, 3, "cot", right)[1] for record in used]
    return {
        **row,
        **accuracy_cell(outcomes),
        **cost_cells(used, 3, "cot"),
        "vs_cot": paired_against(cot, outcomes),
        "vs_paper": paired_against(paper, outcomes),
    }
