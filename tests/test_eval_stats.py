"""Statistics and per-stage accounting, against values computed by hand."""

from __future__ import annotations

import pytest

from sift_graph.answers import answers_agree
from sift_graph.evaluation.stats import discordant_pairs, majority_vote, mcnemar_exact, wilson_interval
from sift_graph.evaluation.summary import answer_at, cost_at, exit_counts, shares_of, summarize, wall_time


def test_wilson_interval_hand_values():
    # 8/10: center (0.8 + z²/20)/(1 + z²/10) = 0.71675, half-width 0.22658.
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    # 0/10: (0, z²/10 / (1 + z²/10)) = (0, 0.2775); n/n mirrors it.
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_mcnemar_exact_hand_values():
    assert mcnemar_exact(1, 6) == pytest.approx(0.125)  # 2 * (1 + 7) / 2**7
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)  # 2 / 2**5
    assert mcnemar_exact(6, 1) == mcnemar_exact(1, 6)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    assert discordant_pairs([True, True, False, False], [True, False, True, True]) == (1, 2)


def test_majority_vote_groups_equivalent_answers():
    same = lambda a, b: answers_agree(a, b)  # noqa: E731
    assert majority_vote(["6", "5", "5.0", None, "\\frac{10}{2}"], same) == 1
    assert majority_vote(["6", "5", "5", "6"], same) == 0  # a tie goes to the group seen first
    assert majority_vote([None, None], same) is None


def record(qid, exit_stage, sift_correct, cot_correct):
    """A stored record: stage costs 3/100, 3/100, 4/150 (calls/tokens), fallback 1/15, CoT 1/15."""
    cost = lambda calls, tokens: {"calls": calls, "input_tokens": tokens - 5, "output_tokens": 5}  # noqa: E731
    used = {"1": cost(3, 100), "2": cost(0, 0), "3": cost(0, 0), "fallback": cost(0, 0)}
    if exit_stage is None or exit_stage >= 2:
        used["2"] = cost(3, 100)
    if exit_stage is None or exit_stage >= 3:
        used["3"] = cost(4, 150)
    if exit_stage is None:
        used["fallback"] = cost(1, 15)
    return {
        "id": qid,
        "sample": 0,
        "question_sha": "x",
        "status": "ok",
        "cot": {"answer": f"c{qid}", "correct": cot_correct, **cost(1, 15)},
        "sift": {"answer": f"s{qid}", "correct": sift_correct, "exit_stage": exit_stage},
        "stage_costs": used,
    }


# q1 agrees at stage 1, q2 at stage 2, q3 at stage 3, q4 falls back.
RECORDS = [
    record("1", 1, True, False),
    record("2", 2, True, False),
    record("3", 3, False, True),
    record("4", None, True, True),
]


def test_a_question_not_yet_agreed_counts_with_the_cot_answer():
    assert [answer_at(RECORDS[1], stage) for stage in (0, 1, 2, 3)] == [
        ("c2", False),
        ("c2", False),
        ("s2", True),
        ("s2", True),
    ]
    assert answer_at(RECORDS[3], 3) == ("c4", True)


def test_cost_counts_sift_up_to_the_stage_plus_cot_when_not_agreed():
    assert [cost_at(RECORDS[0], stage) for stage in (0, 1, 2, 3)] == [(1, 15), (3, 100), (3, 100), (3, 100)]
    assert [cost_at(RECORDS[1], stage) for stage in (1, 2, 3)] == [(4, 115), (6, 200), (6, 200)]
    assert [cost_at(RECORDS[3], stage) for stage in (1, 2, 3)] == [(4, 115), (7, 215), (11, 365)]


def test_per_stage_accuracy_exit_shares_and_paired_tests():
    summary = summarize(RECORDS)
    columns = summary["columns"]
    # CoT: q3, q4 right. Stage 1: q1 by SIFT, q3 and q4 by CoT. Stage 2: all four. Stage 3: q3 lost.
    assert [columns[c]["correct"] for c in ("cot", "stage1", "stage2", "stage3")] == [2, 3, 4, 3]
    assert columns["stage3"]["accuracy"] == 0.75 and columns["stage3"]["n"] == 4
    assert columns["stage3"]["ci95"] == list(wilson_interval(3, 4))
    assert summary["exit_shares"] == {"1": 0.25, "2": 0.25, "3": 0.25, "fallback": 0.25}
    # Where each stopped, and whether SIFT's own answer was right there (q3's stage-3 agreement was wrong).
    assert summary["exits"] == {
        "1": {"questions": 1, "right": 1},
        "2": {"questions": 1, "right": 1},
        "3": {"questions": 1, "right": 0},
        "fallback": {"questions": 1, "right": 1},
    }
    assert columns["stage3"]["calls_per_question"] == 7.5  # (3 + 6 + 10 + 11) / 4
    assert columns["stage1"]["tokens_per_question"] == 111.25  # (100 + 115 + 115 + 115) / 4
    assert columns["stage3"]["tokens_per_question"] == 253.75  # (100 + 200 + 350 + 365) / 4
    assert columns["cot"]["tokens_per_question"] == 15
    # Stage 2 vs CoT: SIFT alone right on q1, q2; CoT alone on none: p = 2 / 2**2.
    assert columns["stage2"]["vs_cot"] == {"cot_only": 0, "sift_only": 2, "p_value": 0.5}
    assert columns["stage3"]["vs_cot"] == {"cot_only": 1, "sift_only": 2, "p_value": 1.0}
    assert summary["questions"] == 4 and summary["errors"] == 0


def test_errors_are_counted_apart_and_never_graded():
    failed = {"id": "5", "sample": 0, "question_sha": "x", "status": "error", "error": "ConnectionError: down"}
    summary = summarize([*RECORDS, failed])
    assert summary["graded"] == 4 and summary["errors"] == 1 and summary["columns"]["cot"]["n"] == 4
    assert summary["error_examples"] == ["ConnectionError: down"]
    assert shares_of(exit_counts([])) == {"1": 0.0, "2": 0.0, "3": 0.0, "fallback": 0.0}


def test_samples_give_mean_accuracy_and_majority_votes():
    # Three samples of one question (gold 5): SIFT answers 5, 5, 4 (all at stage 1); CoT 4, 4, 5.
    runs = []
    for sample, (sift, cot) in enumerate([("5", "4"), ("5", "4"), ("4", "5")]):
        run = record("1", 1, sift == "5", cot == "5")
        run["sample"] = sample
        run["sift"]["answer"], run["cot"]["answer"] = sift, cot
        runs.append(run)
    summary = summarize(runs)
    assert summary["samples"] == 3
    assert summary["columns"]["cot"]["accuracy"] == pytest.approx(1 / 3)
    assert summary["columns"]["stage1"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["columns"]["stage1"]["range"] == [0.0, 1.0]
    majority = summary["majority"]
    assert majority["questions"] == 1
    assert majority["sift"]["correct"] == 1 and majority["cot"]["correct"] == 0
    assert majority["sift"]["tokens_per_question"] == 300  # 3 runs x 100 tokens


def test_wall_time_sums_each_invocation_from_start_to_its_last_record():
    stamps = [("a", 100.0, 103.0), ("a", 100.0, 105.0), ("b", 200.0, 201.5)]
    records = [{"session": s, "session_started": t0, "finished_at": t1} for s, t0, t1 in stamps]
    assert wall_time(records) == pytest.approx(6.5)
