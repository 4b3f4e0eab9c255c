"""Self-consistency as a baseline (`sift eval --sc K`): the vote, its token accounting,
the samples' seeds, resuming, and the SC@k rows beside SIFT's in the table and report."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import pytest

from sift_graph import cli
from sift_graph.answers import answers_agree
from sift_graph.context import SiftContext
from sift_graph.evaluation.consistency import sc_summary, vote, vote_sizes
from sift_graph.evaluation.datasets import Question
from sift_graph.evaluation.records import record_problem
from sift_graph.evaluation.report import JSON_FILE, MARKDOWN_FILE, PLOT_FILE
from sift_graph.evaluation.results import EvalConfig, ResultStore
from sift_graph.evaluation.runner import run_eval
from sift_graph.testing import ScriptedChatModel, boxed

from helpers import AGREE_ON_18, committed_paper_set

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "gsm8k_sample.jsonl"  # 5 GSM8K questions; gold 18, 3, 70000, 540, 20
SAME = partial(answers_agree, comparator="math")
QUESTIONS = [Question("q1", "Ann has 5 pears. How many pears?", "5"), Question("q2", "Bo has 7 figs?", "7")]


def sample(k: int, answer: str | None, *, gold: str = "5", truncated: bool = False, tokens: int = 10) -> dict:
    """A stored CoT sample (what `records.build_sample_record` writes), graded against `gold`."""
    return {
        "id": "q1",
        "sample": k,
        "question_sha": "sha",
        "gold": gold,
        "status": "ok",
        "method": "cot-sample",
        "cot": {
            "answer": answer,
            "correct": SAME(gold, answer),
            "calls": 1,
            "input_tokens": tokens,
            "output_tokens": 2 * tokens,
            "truncated": truncated,
        },
    }


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["5", "7", "7"], ("7", False)),  # the majority
        (["7", "5", "5.0", "7"], ("7", False)),  # a 2-2 tie: the group seen first
        (["5", "7", "7", "5"], ("5", True)),
        ([None, "", "7", None], ("7", False)),  # missing answers do not vote
        ([None, None], (None, False)),  # no vote at all: no answer, wrong
        (["\\frac{10}{2}", "5", "7"], ("\\frac{10}{2}", True)),  # equivalent answers are one group
    ],
)
def test_the_vote(answers, expected):
    assert vote([sample(k, answer) for k, answer in enumerate(answers)], SAME) == expected


def test_a_truncated_sample_does_not_vote():
    samples = [sample(0, "7", truncated=True), sample(1, "5"), sample(2, "7", truncated=True)]
    assert vote(samples, SAME) == ("5", True)
    assert vote(samples[:1], SAME) == (None, False)


@pytest.mark.parametrize(("samples", "sizes"), [(1, [1]), (2, [1, 2]), (4, [1, 2, 4]), (6, [1, 2, 4, 6]), (0, [])])
def test_sc_at_k_for_k_1_2_4_up_to_the_samples(samples, sizes):
    assert vote_sizes(samples) == sizes


def test_sc_at_k_counts_the_tokens_and_calls_of_its_k_samples_only():
    records = [sample(k, answer, tokens=10 * (k + 1)) for k, answer in enumerate(["7", "5", "5", "7"])]
    rows = {row["k"]: row for row in sc_summary(records, SAME)["rows"]}
    assert {k: row["tokens_per_question"] for k, row in rows.items()} == {1: 30, 2: 90, 4: 300}
    assert {k: row["calls_per_question"] for k, row in rows.items()} == {1: 1, 2: 2, 4: 4}
    assert {k: row["correct"] for k, row in rows.items()} == {1: 0, 2: 0, 4: 0}  # 7; tie 7-5 -> 7; tie -> 7
    assert rows[1]["ci95"][0] == 0.0 and "vs_cot" not in rows[1]


def test_only_questions_with_every_sample_are_voted_on():
    records = [sample(0, "5"), sample(1, "5"), {**sample(0, "7"), "id": "q2"}]
    summary = sc_summary(records, SAME)
    assert (summary["samples"], summary["questions"]) == (2, 1)


def test_a_sample_record_is_a_usable_record():
    assert record_problem(sample(0, "5")) is None
    assert record_problem({**sample(0, "5"), "cot": {"answer": "5"}}) is not None


def test_self_consistency_is_a_result_set_of_its_own_that_sifts_variants_do_not_change():
    sampled = SiftContext(model="openai:m", temperature=0.7)
    sc = EvalConfig.for_self_consistency(sampled)
    assert sc.digest() != EvalConfig.from_context(sampled).digest()
    assert sc.as_dict()["method"] == "self-consistency" and "forward_rounds" not in sc.as_dict()
    for variant in ({"sticker_check": "numbers"}, {"max_stage": 1}, {"inverse_rounds": 3}):
        assert EvalConfig.for_self_consistency(SiftContext(model="openai:m", temperature=0.7, **variant)) == sc
    assert "method" not in EvalConfig.from_context(sampled).as_dict()


def sampling_model() -> ScriptedChatModel:
    """CoT replies in call order: q1's samples 5, 4, 5, 6, then q2's 7, 7, 1, 1."""
    return ScriptedChatModel(script={"direct": [boxed(a) for a in ["5", "4", "5", "6", "7", "7", "1", "1"]]})


async def sc_run(folder: Path, samples: int, model: ScriptedChatModel) -> list[dict]:
    context = SiftContext(model=model, temperature=0.7, seed=10, cache="off")
    config = EvalConfig.for_self_consistency(SiftContext(model="openai:m", temperature=0.7, seed=10))
    store = ResultStore(folder, "toy", config)
    await run_eval(
        QUESTIONS, store=store, context=context, samples=samples, concurrency=1, progress=None, self_consistency=True
    )
    return sorted(store.records(), key=lambda record: (record["id"], record["sample"]))


async def test_samples_have_seeds_seed_plus_k_differ_and_are_reproducible(tmp_path):
    model = sampling_model()
    records = await sc_run(tmp_path / "a", 4, model)
    assert set(model.call_counts()) == {"direct"}  # CoT alone: no SIFT call
    assert [call.kwargs["seed"] for call in model.calls] == [10, 11, 12, 13] * 2
    assert [record["cot"]["answer"] for record in records] == ["5", "4", "5", "6", "7", "7", "1", "1"]
    again = await sc_run(tmp_path / "b", 4, sampling_model())
    assert [record["cot"] for record in again] == [record["cot"] for record in records]
    summary = sc_summary(records, SAME)
    assert [(row["k"], row["correct"]) for row in summary["rows"]] == [(1, 2), (2, 2), (4, 2)]


async def test_a_longer_run_resumes_without_redoing_a_finished_sample(tmp_path):
    first = sampling_model()
    await sc_run(tmp_path, 2, first)
    assert [call.kwargs["seed"] for call in first.calls] == [10, 11, 10, 11]
    more = ScriptedChatModel(script={"direct": [boxed(a) for a in ["5", "6", "1", "1"]]})
    records = await sc_run(tmp_path, 4, more)
    assert [call.kwargs["seed"] for call in more.calls] == [12, 13, 12, 13]  # only the new samples
    assert [record["sample"] for record in records] == [0, 1, 2, 3] * 2


def script_file(tmp_path: Path) -> Path:
    """SIFT agrees at stage 1 on 18 (right for question 1 only); greedy CoT says 3 (right
    for question 2 only); sampled CoT replies go 18, 3, 3, 3, then 18, 18, 3, 3."""
    script = {**AGREE_ON_18, "direct": [boxed(a) for a in ["3", "3", "18", "3", "3", "3", "18", "18", "3", "3"]]}
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"script": script}), encoding="utf-8")
    return path


def table_rows(printed: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in printed.splitlines())}


def test_sc_rows_sit_beside_cot_and_sifts_stages_with_both_paired_tests(tmp_path, capsys):
    out, spec = tmp_path / "runs", f"scripted:{script_file(tmp_path)}"
    common = ["eval", "--dataset", str(SAMPLE), "--limit", "2", "--model", spec, "--out", str(out)]
    common += ["--concurrency", "1"]
    assert cli.main([*common, "--cache", "off"]) == 0  # greedy SIFT: CoT answers 3, 3
    capsys.readouterr()
    assert cli.main([*common, "--cache", "off", "--sc", "4", "--temperature", "0.7", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    # question 1 (gold 18) votes 18, 3, 3, 3; question 2 (gold 3) votes 18, 18, 3, 3.
    assert rows["SC@1 (T=0.7, seed 1)"][:4] == ["50.0 [9.5, 90.5]", "-", "1.00", rows["SC@1 (T=0.7, seed 1)"][3]]
    assert rows["SC@1 (T=0.7, seed 1)"][4:] == ["1 vs 1, p = 1", "0 vs 0, p = 1"]  # vs CoT, vs stage 3
    assert rows["SC@2 (T=0.7, seed 1)"][0] == "50.0 [9.5, 90.5]"  # ties go to the first sample
    assert rows["SC@4 (T=0.7, seed 1)"][0] == "0.0 [0.0, 65.8]"
    assert rows["SC@4 (T=0.7, seed 1)"][4:] == ["0 vs 1, p = 1", "0 vs 1, p = 1"]
    assert rows["stage 3"][-1] == "-" and rows["CoT"][0] == "50.0 [9.5, 90.5]"
    assert "2 questions with all 4 samples voted on" in printed

    assert cli.main(["report", str(out)]) == 0
    assert capsys.readouterr().out == printed
    markdown = (out / MARKDOWN_FILE).read_text()
    assert "| SC@4 (T=0.7, seed 1) | 0.0 [0.0, 65.8] |" in markdown
    (summary,) = json.loads((out / JSON_FILE).read_text())
    assert [row["k"] for row in summary["self_consistency"][0]["rows"]] == [1, 2, 4]
    assert (out / PLOT_FILE).stat().st_size > 0


def test_an_sc_set_alone_is_reported_alone(tmp_path, capsys):
    out, spec = tmp_path / "runs", f"scripted:{script_file(tmp_path)}"
    argv = ["eval", "--dataset", str(SAMPLE), "--limit", "1", "--model", spec, "--out", str(out)]
    assert cli.main([*argv, "--cache", "off", "--sc", "2", "--temperature", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("gsm8k_sample / " + spec + ": self-consistency")
    assert set(table_rows(printed)) >= {"SC@1 (T=0.5)", "SC@2 (T=0.5)"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sc", "3"], "--sc > 1 needs --temperature > 0"),
        (["--sc", "0"], "--sc: expected an integer >= 1, got 0"),
        (["--sc", "2", "--samples", "2", "--temperature", "0.7"], "--sc and --samples"),
    ],
)
def test_bad_sc_flags_are_one_line_and_exit_2(flags, message, tmp_path, capsys):
    assert cli.main(["eval", "--dataset", "gsm8k", "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_the_ready_sc_command_pairs_with_the_committed_sift_records():
    """results/variants' SC command (same model, server and token limit, sampled) makes a
    result set that the report shows beside the committed greedy SIFT set."""
    from sift_graph.evaluation.consistency import pairs_with
    from sift_graph.evaluation.results import ResultSet

    committed = committed_paper_set()
    context = SiftContext(
        model="openai:qwen2.5-coder-1.5b-instruct", base_url="http://127.0.0.1:8765/v1", temperature=0.7, top_p=0.95
    )
    config = EvalConfig.for_self_consistency(context)
    planned = ResultSet("gsm8k", config.digest(), config.as_dict(), [], 0)
    assert pairs_with(planned, committed)
    assert not pairs_with(ResultSet("gsm8k_test_100_300", config.digest(), config.as_dict(), [], 0), committed)


def test_an_sc_set_beside_a_sift_set_of_several_samples_is_shown_alone(tmp_path, capsys):
    spec = f"scripted:{script_file(tmp_path)}"
    argv = ["eval", "--dataset", str(SAMPLE), "--limit", "1", "--model", spec, "--out", str(tmp_path / "runs")]
    argv += ["--cache", "off", "--temperature", "0.5"]
    assert cli.main([*argv, "--samples", "2"]) == 0
    assert cli.main([*argv, "--sc", "2"]) == 0
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "runs")]) == 0
    printed = capsys.readouterr().out
    assert "SIFT + majority" in printed and ": self-consistency" in printed and "SC@2 (T=0.5)" in printed


def test_sift_view_shows_an_sc_set_with_its_table(tmp_path, capsys):
    from starlette.testclient import TestClient

    from sift_graph.view import ResultSources, create_view_app

    out, spec = tmp_path / "runs", f"scripted:{script_file(tmp_path)}"
    argv = ["eval", "--dataset", str(SAMPLE), "--limit", "1", "--model", spec, "--out", str(out), "--cache", "off"]
    assert cli.main([*argv, "--sc", "2", "--temperature", "0.5"]) == 0
    capsys.readouterr()
    (config_path,) = out.glob("*.config.json")
    set_id = config_path.name.removesuffix(".config.json")
    client = TestClient(create_view_app(ResultSources([out])))
    assert set_id in client.get("/").text
    page = client.get(f"/sets/{set_id}")
    assert page.status_code == 200 and "SC@2 (T=0.5)" in page.text
    assert client.get(f"/sets/{set_id}/questions").status_code == 200
