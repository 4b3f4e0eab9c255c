"""What one evaluated (question, sample) is stored as, and the stages the paper reports:
small pure functions over the graph's output, shared by the runner and the report.

Stage 1 is SIFT's first round, stage 2 forward optimization, stage 3 inverse generation
(+FO); a question no round settled ends at the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sift_graph.answers import Comparator, answers_agree
from sift_graph.evaluation.datasets import Question
from sift_graph.state import RoleUsage, RoundRecord, counter, total_usage

PREDICTION_ROLES = ("predict_sticker", "predict_query_sticker")
STAGE_OF_ROUND_KIND = {"sticker": 1, "forward": 2, "inverse": 3}
STAGES = (1, 2, 3)
FALLBACK = "fallback"

QuestionKey = tuple[str, str]
"""(id, question_sha): a record's question, whichever result set holds it."""

Cost = dict[str, int]
"""calls, input_tokens, output_tokens."""
_COST_KEYS = ("calls", "input_tokens", "output_tokens")


def question_key(record: Mapping[str, Any]) -> QuestionKey:
    return str(record["id"]), str(record["question_sha"])


def empty_cost() -> Cost:
    return dict.fromkeys(_COST_KEYS, 0)


def add_usage(cost: Cost, usage: Mapping[str, RoleUsage]) -> Cost:
    """`cost` plus every role's counters in `usage` (a new dict)."""
    total = total_usage(usage)
    return {name: cost[name] + counter(total, name) for name in _COST_KEYS}


def usage_by_stage(rounds: Sequence[RoundRecord], usage: Mapping[str, RoleUsage]) -> dict[str, Cost]:
    """A run's calls summed per stage ("1", "2", "3") plus the fallback: each round
    carries its own calls; the fallback's is the run's `direct` call."""
    stages = {str(stage): empty_cost() for stage in STAGES} | {FALLBACK: empty_cost()}
    for record in rounds:
        key = str(STAGE_OF_ROUND_KIND[record["kind"]])
        stages[key] = add_usage(stages[key], record["usage"])
    if "direct" in usage:
        stages[FALLBACK] = add_usage(stages[FALLBACK], {"direct": usage["direct"]})
    return stages


def exit_stage(output: Mapping[str, Any]) -> int | None:
    """The stage SIFT stopped at with a consensus answer, or None for the fallback."""
    agreed = output.get("consensus_round")
    if agreed is None:
        return None
    kind = next(record["kind"] for record in output["rounds"] if record["round"] == agreed)
    return STAGE_OF_ROUND_KIND[kind]


def method_result(answer: str | None, gold: str, cost: Cost, comparator: Comparator) -> dict[str, Any]:
    """Grade an answer against the gold one, with consensus's own equivalence."""
    return {"answer": answer, "correct": answers_agree(gold, answer, comparator), **cost}


def record_problem(record: Any) -> str | None:
    """Why a stored line is not a usable record (None when it is one): what a report
    reads must be there, so a hand-edited or foreign line is skipped, not a crash."""
    if not isinstance(record, dict) or not {"id", "sample", "question_sha", "status"} <= record.keys():
        return "not a result record"
    rounds = record.get("rounds")
    if rounds is not None and not (isinstance(rounds, list) and all(isinstance(detail, dict) for detail in rounds)):
        return "a record whose rounds are not a list of rounds"
    if record["status"] != "ok":
        return None
    sample_only = record.get("method") == SAMPLE_METHOD
    methods = [record.get("cot")] if sample_only else [record.get("cot"), record.get("sift")]
    if not all(isinstance(method, dict) and {"answer", "correct", *_COST_KEYS} <= method.keys() for method in methods):
        return "a finished record without its cot and sift results"
    if sample_only:
        return None
    if "exit_stage" not in record["sift"]:
        return "a finished record without SIFT's exit stage"
    costs = record.get("stage_costs")
    stages = [str(stage) for stage in STAGES]
    if not isinstance(costs, dict) or not all(isinstance(costs.get(stage), dict) for stage in stages):
        return "a finished record without its stage costs"
    return None


def saved_calls(*usages: Mapping[str, RoleUsage] | None) -> dict[str, int]:
    """Calls served without a request: reused within a run (a round repeating the last
    one's calls, the CoT's reply as SIFT's fallback) and found in the call cache."""
    totals = [total_usage(usage) for usage in usages]
    return {
        "reused": sum(counter(total, "reused_calls") for total in totals),
        "from_cache": sum(counter(total, "stored_calls") for total in totals),
    }


SAMPLE_METHOD = "cot-sample"
"""The `method` of a record that holds one sampled CoT solve alone (self-consistency's)."""


def cot_result(question: Question, cot_output: Mapping[str, Any], comparator: Comparator) -> dict[str, Any]:
    """The CoT baseline's graded answer, its cost, whether it was cut off, its text."""
    cost = add_usage(empty_cost(), cot_output.get("usage") or {})
    return {
        **method_result(cot_output.get("answer"), question.answer, cost, comparator),
        "truncated": bool((cot_output.get("fallback") or {}).get("truncated")),
        "solution": cot_output.get("response"),
    }


def build_sample_record(question: Question, cot_output: Mapping[str, Any], comparator: Comparator) -> dict[str, Any]:
    """The stored result of one sampled CoT solve (one vote of self-consistency)."""
    return {
        "status": "ok",
        "method": SAMPLE_METHOD,
        "cot": cot_result(question, cot_output, comparator),
        "saved_calls": saved_calls(cot_output.get("usage")),
    }


def build_record(
    question: Question, cot_output: Mapping[str, Any], sift_output: Mapping[str, Any], comparator: Comparator
) -> dict[str, Any]:
    """The stored result of one (question, sample); see `summary` for how it is read."""
    rounds = sift_output.get("rounds") or []
    usage = sift_output.get("usage") or {}
    return {
        "status": "ok",
        "cot": cot_result(question, cot_output, comparator),
        "sift": {
            **method_result(sift_output.get("answer"), question.answer, add_usage(empty_cost(), usage), comparator),
            "consensus_round": sift_output.get("consensus_round"),
            "exit_stage": exit_stage(sift_output),
        },
        "stage_costs": usage_by_stage(rounds, usage),
        "saved_calls": saved_calls(cot_output.get("usage"), usage),
        "rounds": [round_detail(record) for record in rounds],
    }


def round_detail(record: RoundRecord) -> dict[str, Any]:
    """What a record keeps of a round: enough to read why it agreed or not afterwards
    (its sticker, an inverse round's draft, both solutions and how they ended)."""
    predictions = [record["predict_sticker"], record["predict_query_sticker"]]
    draft = record.get("draft")
    return {
        "round": record["round"],
        "kind": record["kind"],
        "answers": [prediction["answer"] for prediction in predictions],
        "agreed": record["agreed"],
        "sticker": record["sticker"]["text"],
        "sticker_problems": record["sticker"]["problems"],
        "draft": None if draft is None else draft["text"],
        "draft_problems": [] if draft is None else draft["problems"],
        "truncated": [prediction["truncated"] for prediction in predictions],
        "cached": [prediction.get("cached", False) for prediction in predictions],
        # the same calls as an earlier round's (an unchanged sticker), served by the run
        "repeated": [counter(record["usage"].get(role) or {}, "reused_calls") > 0 for role in PREDICTION_ROLES],
        "solutions": [prediction["text"] for prediction in predictions],
    }
