"""The number check measured against a run of the paper's method by rerunning only the
questions where it changes a sticker (`sift_graph.evaluation.number_check`, `sift eval --ids`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sift_graph import cli
from sift_graph.answers import answers_agree
from sift_graph.evaluation.datasets import DatasetError, load_dataset
from sift_graph.evaluation.number_check import changed_by_number_check, is_number_check_of, number_check_row
from sift_graph.evaluation.results import ResultSet
from sift_graph.testing import FORWARD_STICKER, QUESTION, REFINED_STICKER, STICKER, script_for

from helpers import INVENTING_STICKER, unsettled_record

SAMPLE = Path(__file__).resolve().parent / "data" / "gsm8k_sample.jsonl"  # ids 0-4
ALL_INVENTED = "**Conditions:**\n1. Ann has 7 pears.\n**Question:** How many pears?"


@pytest.mark.parametrize(
    ("stickers", "changed"),
    [
        ([STICKER, FORWARD_STICKER, REFINED_STICKER], False),  # faithful throughout
        ([INVENTING_STICKER, FORWARD_STICKER, REFINED_STICKER], False),  # round 1 is never checked
        ([STICKER, INVENTING_STICKER, REFINED_STICKER], True),  # forward optimization
        ([STICKER, FORWARD_STICKER, INVENTING_STICKER], True),  # the inverse round's forward optimization
        ([STICKER, ALL_INVENTED, REFINED_STICKER], False),  # kept: it would be left empty
    ],
)
def test_a_record_is_changed_only_where_the_check_drops_a_forward_optimized_condition(stickers, changed):
    assert changed_by_number_check(unsettled_record("a", ["1", "2", "3"], stickers=stickers)) is changed


def settled_at_round_2(question_id: str, question_sha: str = "sha") -> dict:
    """A rerun's record: both predictions said 5 (right) in round 2, no stage-3 or CoT-fallback cost."""
    record = unsettled_record(question_id, ["1", "5", "5"], stickers=[STICKER, FORWARD_STICKER, REFINED_STICKER])
    record["question_sha"] = question_sha
    record["sift"] = {"answer": "5", "correct": True, "exit_stage": 2, "consensus_round": 2}
    record["stage_costs"]["3"] = {"calls": 0, "input_tokens": 0, "output_tokens": 0}
    return record


def test_the_row_waits_for_the_reruns_it_needs_and_reads_the_other_questions_off_the_records():
    changed = unsettled_record("a", ["1", "2", "3"], stickers=[STICKER, INVENTING_STICKER, REFINED_STICKER])
    unchanged = unsettled_record("b", ["1", "2", "3"], stickers=[STICKER, FORWARD_STICKER, REFINED_STICKER])
    records, cot, paper = [changed, unchanged], [False, False], [False, False]

    waiting = number_check_row(records, [], answers_agree, cot, paper)
    assert waiting["rerun"] == {"needed": ["a"], "missing": ["a"], "same_before_check": 0}
    assert "accuracy" not in waiting
    edited = settled_at_round_2("a", question_sha="other")  # a rerun of another text is not this question's
    assert number_check_row(records, [edited], answers_agree, cot, paper)["rerun"]["missing"] == ["a"]

    # b's rerun is not used: where the check changes nothing, the records answer for it.
    row = number_check_row(records, [settled_at_round_2("a"), settled_at_round_2("b")], answers_agree, cot, paper)
    assert row["rerun"] == {"needed": ["a"], "missing": [], "same_before_check": 1}  # round 1 as in the record
    assert (row["correct"], row["n"]) == (1, 2)
    assert row["vs_paper"] == {"this_only": 1, "reference_only": 0, "p_value": 1.0}
    assert row["calls_per_question"] == (6 + 10) / 2  # a: stages 1-2; b: 3 stages + the CoT fallback
    assert row["tokens_per_question"] == (120 + 200) / 2


def result_set(dataset: str = "gsm8k", **config) -> ResultSet:
    return ResultSet(dataset, "digest", {"model": "openai:m", "max_tokens": 1024, **config}, [], 0)


def test_a_number_check_set_pairs_with_the_paper_run_it_differs_from_in_that_setting_only():
    paper = result_set()
    assert is_number_check_of(result_set(sticker_check="numbers"), paper)
    assert not is_number_check_of(result_set(sticker_check="numbers", max_tokens=512), paper)
    assert not is_number_check_of(result_set("math500", sticker_check="numbers"), paper)
    assert not is_number_check_of(result_set(), paper)
    assert not is_number_check_of(result_set(sticker_check="numbers"), result_set(sticker_check="numbers"))


def test_ids_keep_those_questions_in_the_datasets_order():
    _, questions = load_dataset(str(SAMPLE), ids=["3", "1"])
    assert [question.id for question in questions] == ["1", "3"]
    with pytest.raises(DatasetError, match=r"ids: not in gsm8k_sample .*: 4"):
        load_dataset(str(SAMPLE), limit=3, ids=["1", "4"])


@pytest.mark.parametrize(("ids", "message"), [("1,99", "ids: not in gsm8k_sample"), (" , ", "--ids: expected")])
def test_bad_ids_are_one_line_and_exit_2(ids, message, tmp_path, capsys):
    assert cli.main(["eval", "--dataset", str(SAMPLE), "--ids", ids, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_sift_report_puts_the_variant_together_from_the_paper_run_and_a_rerun_of_what_it_changes(tmp_path, capsys):
    """The paper's method fails on a question whose forward-optimized sticker invents
    numbers; rerun with the check (the model answers the checked sticker otherwise), it
    agrees on the right answer; a question the check leaves alone is not rerun."""
    dataset = tmp_path / "apples.jsonl"
    faithful = "Ann has 3 apples, buys 2 more: together 5 apples of 150 grams each. How many apples does she have?"
    dataset.write_text(
        json.dumps({"id": "a", "question": QUESTION, "answer": "5"})
        + "\n"
        + json.dumps({"id": "b", "question": faithful, "answer": "9"})
        + "\n"
    )
    script = tmp_path / "model.json"
    # One process loads the spec once, so the replies go on in call order across the runs:
    # a, then b, fail all three rounds (CoT says 4); the rerun of a agrees on 5 in round 2.
    replies = script_for(["4", "6", "8", "4", "6", "8", "4", "5"], ["3", "7", "9", "3", "7", "9", "3", "5"], "4")
    script.write_text(json.dumps({**replies, "forward": INVENTING_STICKER}))
    run = ["eval", "--dataset", str(dataset), "--model", f"scripted:{script}", "--out", str(tmp_path / "runs")]
    run += ["--cache", "off", "--concurrency", "1"]
    assert cli.main(run) == 0

    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "runs"), "--variants"]) == 0
    assert "needs a rerun (0 of 1 done)" in capsys.readouterr().out
    assert "`--sticker-check numbers --ids a`" in (tmp_path / "runs" / "report.md").read_text()

    assert cli.main([*run, "--sticker-check", "numbers", "--ids", "a"]) == 0
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "runs"), "--variants"]) == 0
    printed = capsys.readouterr().out
    (row,) = [line for line in printed.splitlines() if line.startswith("| 3 stages, number check")]
    assert "| 50.0 [" in row and "| 1 vs 0, p = 1 |" in row  # a right now, b as the paper's run answered it
    reruns = [json.loads(line) for path in (tmp_path / "runs").glob("*.jsonl") for line in path.open()]
    checked = [r for r in reruns if r["rounds"][-1]["agreed"]]
    assert [r["id"] for r in checked] == ["a"] and "150" not in checked[0]["rounds"][1]["sticker"]
    assert "up to the check's first change in 1 of the 1 done." in printed
    assert "1 FO + 1 IG rounds, number check, math grading" in (tmp_path / "runs" / "report.md").read_text()
    # The rerun set's own variants keep the check and are tested against its own run; the
    # plot draws it as the paper set's point, not as a line of its own.
    assert "| this set's run (3 stages, CoT fallback, number check) | - |" in printed
    assert "| stage budget 1, query+sticker fallback, number check |" in printed
    summaries = json.loads((tmp_path / "runs" / "summary.json").read_text())
    rerun_sets = [summary for summary in summaries if summary.get("number_check_rerun_of")]
    assert [summary["config"]["sticker_check"] for summary in rerun_sets] == ["numbers"]


def test_a_rerun_that_did_not_repeat_the_shared_rounds_is_flagged_as_another_engine():
    from sift_graph.evaluation.tables import rerun_note

    record = unsettled_record("a", ["1", "2", "3"], stickers=[STICKER, FORWARD_STICKER, INVENTING_STICKER])
    drifted = settled_at_round_2("a")
    drifted["rounds"][1]["answers"] = ["1", "6"]  # round 2 came before the check's first change (round 3)
    row = number_check_row([record], [drifted], answers_agree, [False], [False])
    assert row["rerun"]["same_before_check"] == 0
    assert "in 0 of the 1 done: where they did not" in rerun_note(row) and "two engines" in rerun_note(row)
