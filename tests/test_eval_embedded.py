"""Integration: `sift eval` + `sift report` on two GSM8K questions with the embedded model.

SmolLM2-135M is a smoke-test model: this checks that real runs produce consistent records,
the table and the plot, never that the answers are right. Two questions at 32 new tokens
per call keep it to about two minutes on two CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sift_graph.evaluation.report import JSON_FILE, MARKDOWN_FILE, PLOT_FILE
from sift_graph.evaluation.results import read_records

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CALLS_BY_EXIT_STAGE = {1: 3, 2: 6, 3: 10, None: 11}


def sift(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sift_graph.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_eval_and_report_on_gsm8k_with_the_embedded_model(tmp_path):
    out = tmp_path / "runs"
    command = [
        "eval",
        "--dataset",
        "gsm8k",
        "--limit",
        "2",
        "--model",
        "default",
        "--max-tokens",
        "32",
        "--out",
        str(out),
    ]
    first = sift(*command)
    assert first.returncode == 0, first.stderr
    assert "(0 of 2 already done)" in first.stderr and "model ready in" in first.stderr
    assert "concurrency: 8 (local model: batched generation; --concurrency changes it)" in first.stderr
    assert first.stdout.startswith("gsm8k / default (T=0, max 32 tokens, 1 FO + 1 IG rounds, math grading)")
    assert "2 questions x 1 sample(s), 2 graded, 0 errors" in first.stdout

    [results] = out.glob("gsm8k-*.jsonl")
    records, torn = read_records(results)
    assert torn == 0 and sorted(r["id"] for r in records) == ["1", "2"]
    for record in records:
        sift_part = record["sift"]
        assert record["cot"]["calls"] == 1 and record["cot"]["output_tokens"] <= 32
        # What SIFT asked for: made, or served by the run's own layer (a repeated round,
        # the CoT reused as the fallback).
        assert sift_part["calls"] + record["saved_calls"]["reused"] == CALLS_BY_EXIT_STAGE[sift_part["exit_stage"]]
        stage_costs = record["stage_costs"].values()
        assert sum(cost["calls"] for cost in stage_costs) == sift_part["calls"]
        assert (
            sum(c["input_tokens"] + c["output_tokens"] for c in stage_costs)
            == sift_part["input_tokens"] + sift_part["output_tokens"]
        )

    again = sift(*command)  # everything is done: nothing runs, not even the model load
    assert again.returncode == 0 and "(2 of 2 already done)" in again.stderr and "model ready" not in again.stderr
    assert len(read_records(results)[0]) == 2

    report = sift("report", str(out))
    assert report.returncode == 0, report.stderr
    assert report.stdout == first.stdout
    assert "| model | dataset | n | CoT | stage 1 | stage 2 | stage 3 |" in (out / MARKDOWN_FILE).read_text()
    [summary] = json.loads((out / JSON_FILE).read_text())
    assert summary["graded"] == 2 and sum(summary["exit_shares"].values()) == pytest.approx(1.0)
    tokens = [summary["columns"][c]["tokens_per_question"] for c in ("cot", "stage1", "stage2", "stage3")]
    assert tokens == sorted(tokens)  # each stage can only add cost
    assert (out / PLOT_FILE).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
