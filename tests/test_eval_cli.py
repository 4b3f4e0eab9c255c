"""`sift eval` and `sift report` end to end with a scripted model (spec `scripted:<file>`),
including a run killed with SIGKILL mid-way and resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sift_graph import cli
from sift_graph.evaluation.report import JSON_FILE, MARKDOWN_FILE, PLOT_FILE
from sift_graph.evaluation.results import read_records
from sift_graph.evaluation.runner import UNREACHABLE_IN_A_ROW
from sift_graph.faults import is_unreachable
from sift_graph.testing import STICKER

from helpers import AGREE_ON_18, free_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "gsm8k_sample.jsonl"  # 5 GSM8K questions; gold 18, 3, 70000, 540, 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def script_file(tmp_path: Path, latency: float = 0.0) -> Path:
    """Every question agrees at stage 1 on 18 (right for the first question only);
    the CoT answer is always 3 (right for the second only)."""
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"script": AGREE_ON_18, "latency": latency}), encoding="utf-8")
    return path


def sift(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sift_graph.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        **kwargs,
    )


def test_eval_prints_the_table_and_report_writes_markdown_json_and_png(tmp_path, capsys):
    out = tmp_path / "runs"
    spec = f"scripted:{script_file(tmp_path)}"
    assert cli.main(["eval", "--dataset", str(SAMPLE), "--model", spec, "--out", str(out)]) == 0
    printed, progress = capsys.readouterr()
    assert "(0 of 5 already done)" in progress
    assert "\nconcurrency: 4\n" in progress  # not a local model: the plain default
    lines = printed.splitlines()
    assert lines[0].startswith(f"gsm8k_sample / {spec} (T=0, max 1024 tokens")
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in lines[3:8])}
    assert rows["CoT"][:3] == ["20.0 [3.6, 62.4]", "-", "1.00"]
    assert rows["stage 1"] == ["20.0 [3.6, 62.4]", "100.0%", "3.00", rows["stage 1"][3], "1 vs 1, p = 1"]
    assert rows["fallback"] == ["-", "0.0%", "-", "-", "-"]
    assert any(line.startswith("5 questions x 1 sample(s), 5 graded, 0 errors") for line in lines)

    assert cli.main(["report", str(out)]) == 0
    report_text, _ = capsys.readouterr()
    assert report_text == printed  # the same records, the same table
    markdown = (out / MARKDOWN_FILE).read_text()
    assert "| model | dataset | n | CoT | stage 1 | stage 2 | stage 3 |" in markdown
    assert f"| {spec} | gsm8k_sample | 5 | 20.0 [3.6, 62.4] |" in markdown
    summary = json.loads((out / JSON_FILE).read_text())
    assert summary[0]["columns"]["stage1"]["correct"] == 1 and summary[0]["exit_shares"]["1"] == 1.0
    assert (out / PLOT_FILE).read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--dataset", "gsm9k"], "unknown dataset 'gsm9k'"),
        (["eval", "--dataset", "gsm8k", "--samples", "3"], "--samples > 1 needs --temperature > 0"),
        (["eval", "--dataset", "gsm8k", "--concurrency", "0"], "--concurrency: expected an integer >= 1, got 0"),
        (["eval", "--dataset", "gsm8k", "--max-tokens", "0"], "max_tokens: expected an integer >= 1"),
        (["eval"], "the following arguments are required: --dataset"),
        (["eval", "--dataset", "gsm8k", "--model", "scripted:/no/such/file.json"], "model: no such file or folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert cli.main([*argv, "--out", str(tmp_path)] if argv != ["eval"] else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sift: error: ") and message in err


def test_a_malformed_dataset_line_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2"}\n', encoding="utf-8")
    assert cli.main(["eval", "--dataset", str(bad), "--out", str(tmp_path / "o")]) == 2
    expected = "no gold answer: expected an 'answer' field (or a GSM8K '#### N' line, or a \\boxed{} solution)"
    assert capsys.readouterr().err.strip() == f"sift: error: {bad}, line 2: {expected}"


def test_report_needs_a_folder_with_results(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"sift: error: no such results folder '{tmp_path / 'nowhere'}'"
    assert err[1].startswith("sift: error: results: no result sets in")


def comparable(summary_path: Path) -> list[dict]:
    """The numbers of a report, without what legitimately differs between runs (how
    long they took, how many calls the call cache served, and the order in which
    concurrent questions finished, which orders the ids listed by outcome)."""
    summaries = []
    for summary in json.loads(summary_path.read_text()):
        kept = {key: value for key, value in summary.items() if key not in ("wall_seconds", "saved_calls")}
        if outcomes := kept.get("diagnostics", {}).get("outcomes"):
            kept["diagnostics"]["outcomes"] = {group: sorted(ids) for group, ids in outcomes.items()}
        summaries.append(kept)
    return summaries


def test_a_run_killed_mid_way_resumes_without_double_counting(tmp_path):
    spec = f"scripted:{script_file(tmp_path, latency=0.3)}"
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    command = [
        sys.executable,
        "-m",
        "sift_graph.cli",
        "eval",
        "--dataset",
        str(SAMPLE),
        "--model",
        spec,
        "--concurrency",
        "2",
    ]
    process = subprocess.Popen(
        [*command, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    results = lambda: sorted(killed.glob("*.jsonl"))  # noqa: E731
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # wait for the first durable record, then kill
            if results() and results()[0].read_text().count("\n") >= 1:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    before, _ = read_records(results()[0])
    assert 1 <= len(before) < 5, "the kill should land mid-run"

    rerun = sift("eval", "--dataset", str(SAMPLE), "--model", spec, "--concurrency", "2", "--out", str(killed))
    assert rerun.returncode == 0, rerun.stderr
    assert f"({len(before)} of 5 already done)" in rerun.stderr
    records, _torn = read_records(results()[0])  # a kill mid-write may leave one torn line
    assert sorted(record["id"] for record in records) == ["1", "2", "3", "4", "5"]  # each exactly once

    # The clean run and both reports need no process of their own.
    assert cli.main(["eval", "--dataset", str(SAMPLE), "--model", spec, "--out", str(clean)]) == 0
    assert cli.main(["report", str(killed)]) == 0 and cli.main(["report", str(clean)]) == 0
    assert comparable(killed / JSON_FILE) == comparable(clean / JSON_FILE)


def test_scripted_model_from_file_takes_a_bare_script_or_one_with_latency(tmp_path):
    from sift_graph.testing import scripted_model_from_file

    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"direct": "\\boxed{1}"}), encoding="utf-8")
    assert scripted_model_from_file(bare).script == {"direct": "\\boxed{1}"}
    assert scripted_model_from_file(script_file(tmp_path, latency=0.25)).latency == 0.25
    bare.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        scripted_model_from_file(bare)


def test_a_model_that_fails_on_every_question_exits_1(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"sticker": STICKER}), encoding="utf-8")  # nothing scripted for the rest
    out = tmp_path / "runs"
    assert (
        cli.main(["eval", "--dataset", str(SAMPLE), "--limit", "2", "--model", f"scripted:{broken}", "--out", str(out)])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sift: error: model call failed: every question failed, e.g. KeyError:")
    [results] = out.glob("*.jsonl")
    assert [r["status"] for r in read_records(results)[0]] == ["error", "error"]  # recorded, to retry later


def test_a_server_gone_for_good_stops_the_run_instead_of_failing_every_question(tmp_path, capsys):
    """Nothing listens on the port: after UNREACHABLE_IN_A_ROW questions that could not
    reach it the run stops (table printed, exit 1) rather than recording an error for
    every question left; a rerun resumes there."""
    out = tmp_path / "runs"
    gone = f"http://127.0.0.1:{free_port()}/v1"
    argv = ["eval", "--dataset", str(SAMPLE), "--model", "openai:m", "--base-url", gone, "--concurrency", "1"]
    assert cli.main([*argv, "--out", str(out), "--cache", "off"]) == 1
    captured = capsys.readouterr()
    assert "CoT" in captured.out  # the table of what there is
    assert captured.err.strip().splitlines()[-1] == (
        "sift: error: model call failed: stopped: the last 3 questions in a row could not reach the model "
        "server (cannot reach the model server: Connection error.); 2 not started: rerun the same command "
        "to resume"
    )
    [results] = out.glob("*.jsonl")
    records = read_records(results)[0]
    assert [(r["status"], r["unreachable"]) for r in records] == [("error", True)] * UNREACHABLE_IN_A_ROW


def test_unreachable_means_no_answer_at_all_not_a_slow_or_refusing_one():
    import httpx
    import openai

    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    assert is_unreachable(openai.APIConnectionError(request=request))
    assert not is_unreachable(openai.APITimeoutError(request=request))
    refused = openai.APIStatusError("busy", response=httpx.Response(503, request=request), body=None)
    assert not is_unreachable(refused)
    assert not is_unreachable(KeyError("sticker"))


def test_the_config_digest_follows_what_changes_answers_and_only_that():
    from sift_graph.cli.common import context_from_args
    from sift_graph.evaluation.results import EvalConfig

    parse = lambda *extra: cli.build_parser().parse_args(["eval", "--dataset", "gsm8k", *extra])  # noqa: E731
    eval_config = lambda args: EvalConfig.from_context(context_from_args(args))  # noqa: E731
    base = eval_config(parse()).digest()
    assert eval_config(parse("--concurrency", "9", "--timeout", "5", "--limit", "3", "--out", "x")).digest() == base
    assert eval_config(parse("--top-p", "0.9")).digest() == base  # ignored when decoding greedily
    for changed in (
        ["--model", "openai:m"],
        ["--max-tokens", "512"],
        ["--temperature", "0.6"],
        ["--forward-rounds", "2"],
        ["--inverse-rounds", "0"],
        ["--comparator", "string"],
        ["--dtype", "float32"],
    ):
        assert eval_config(parse(*changed)).digest() != base, changed


def test_samples_report_means_and_majority_votes(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = [
        "eval",
        "--dataset",
        str(SAMPLE),
        "--limit",
        "2",
        "--model",
        f"scripted:{script_file(tmp_path)}",
        "--samples",
        "3",
        "--temperature",
        "0.7",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in lines[3:])}
    # Question 1 is right by SIFT (18), question 2 by CoT (3), in every run.
    assert rows["CoT"][0] == "50.0 (50.0-50.0 over 3 runs)"
    assert rows["SIFT + majority"][0] == "50.0 [9.5, 90.5]" and rows["SIFT + majority"][-1] == "1 vs 1, p = 1"
    assert any(line.startswith("2 questions x 3 sample(s), 6 graded") for line in lines)


def test_a_local_model_gets_a_batch_friendly_concurrency_unless_one_is_given():
    from types import SimpleNamespace

    from sift_graph.cli.evaluate import pick_concurrency

    local = SimpleNamespace(suggested_concurrency=8)
    assert pick_concurrency(None, local) == (
        8,
        "concurrency: 8 (local model: batched generation; --concurrency changes it)",
    )
    assert pick_concurrency(2, local) == (2, "concurrency: 2")
    assert pick_concurrency(None, object()) == (4, "concurrency: 4")


def test_a_record_whose_rounds_are_not_a_list_is_skipped_not_a_crash(tmp_path, capsys):
    out = tmp_path / "runs"
    spec = f"scripted:{script_file(tmp_path)}"
    assert cli.main(["eval", "--dataset", str(SAMPLE), "--limit", "2", "--model", spec, "--out", str(out)]) == 0
    [results] = out.glob("*.jsonl")
    first, second = results.read_text(encoding="utf-8").splitlines()
    results.write_text(json.dumps({**json.loads(first), "rounds": 5}) + "\n" + second + "\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 questions x 1 sample(s), 1 graded, 0 errors" in printed and "1 unreadable" in printed, printed


def test_eval_exits_1_when_any_question_ends_in_an_error(tmp_path, capsys):
    script = json.loads(script_file(tmp_path).read_text(encoding="utf-8"))
    flaky = tmp_path / "flaky.json"
    # The first question's sticker fails on every retry; the second is answered.
    flaky.write_text(json.dumps({**script, "failures": {"sticker": 4}}), encoding="utf-8")
    out = tmp_path / "runs"
    argv = ["eval", "--dataset", str(SAMPLE), "--limit", "2", "--concurrency", "1", "--model", f"scripted:{flaky}"]
    assert cli.main([*argv, "--out", str(out)]) == 1
    printed, err = capsys.readouterr()
    assert "1 graded, 1 errors" in printed  # the table is printed all the same
    assert err.strip().splitlines()[-1].startswith("sift: error: model call failed: 1 of 2 questions ended in an error")
