"""`sift solve` with a scripted model: stage-by-stage output, --json, and bad input."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from sift_graph import cli
from sift_graph.testing import QUESTION, ScriptedChatModel, script_for

from helpers import answer_cli_with


@pytest.fixture(autouse=True)
def checkpoints_in_tmp(tmp_path, monkeypatch):
    """Runs are kept in a file of the test's own, not in the working folder's .sift/."""
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("SIFT_CHECKPOINTS", str(path))
    return path


@pytest.fixture
def scripted_cli(monkeypatch):
    """Make every spec the CLI resolves answer with a scripted model (round 2 consensus)."""
    model = ScriptedChatModel(script=script_for(["4", "5"], ["3", "5"]))
    answer_cli_with(monkeypatch, model)
    return model


def test_solve_prints_each_stage_then_the_answer(scripted_cli, capsys):
    assert cli.main(["solve", QUESTION]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert re.fullmatch(r"thread: [0-9a-f-]{36}", lines[0])
    assert lines[1] == "model: default (loading...)"
    assert f"question: {QUESTION}" in lines
    assert "[round 1] sticker (generated):" in lines
    assert "[round 1] no consensus: 4 vs 3" in lines
    assert "[round 2] sticker (forward-optimized):" in lines
    assert "[round 2] consensus: 5 vs 5" in lines
    assert {"[round 1] answer from sticker: 4", "[round 1] answer from query+sticker: 3"} <= set(lines)
    assert any(line.startswith("answer: 5  (consensus in round 2)") for line in lines)
    assert any(line.startswith("calls: 6  tokens: ") for line in lines)
    assert err == ""


def test_json_puts_only_the_result_on_stdout(scripted_cli, capsys):
    assert cli.main(["solve", QUESTION, "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["answer"] == "5" and result["consensus_round"] == 2
    assert set(result) == {"thread_id", "answer", "response", "consensus_round", "sticker", "rounds", "usage"}
    assert err.splitlines()[0] == f"thread: {result['thread_id']}"
    assert "[round 2] consensus: 5 vs 5" in err


def test_question_from_a_file_and_from_stdin(scripted_cli, capsys, tmp_path, monkeypatch):
    path = tmp_path / "q.txt"
    path.write_text(QUESTION + "\n", encoding="utf-8")
    assert cli.main(["solve", "--file", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "5"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(QUESTION.encode())))
    assert cli.main(["solve", "--file", "-", "--json"]) == 0
    assert scripted_cli.calls[0].prompt.count(QUESTION) == 1


def test_settings_reach_the_model(scripted_cli, capsys):
    assert cli.main(["solve", QUESTION, "--max-tokens", "64", "--temperature", "0.7", "--top-p", "0.8"]) == 0
    assert scripted_cli.calls[0].kwargs == {"max_tokens": 64, "temperature": 0.7, "top_p": 0.8}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["solve", ""], "question: expected a non-empty string"),
        (["solve", "   "], "question: expected a non-empty string"),
        (["solve"], "no question: give it as an argument or with --file"),
        (["solve", "q", "--file", "x"], "give the question as an argument or with --file, not both"),
        (
            ["solve", "--file", "/no/such/file.txt"],
            "cannot read question file '/no/such/file.txt': No such file or directory",
        ),
        (["solve", "q", "--model", "gpt:4"], "model: unknown model spec 'gpt:4'"),
        (["solve", "q", "--model", "hf:/no/such.gguf"], "model: no such file or folder '/no/such.gguf'"),
        (["solve", "q", "--max-tokens", "0"], "max_tokens: expected an integer >= 1, got 0"),
        (["solve", "q", "--max-tokens", "many"], "argument --max-tokens: invalid int value: 'many'"),
        (["solve", "q", "--forward-rounds", "-1"], "forward_rounds: expected an integer in [0, 16], got -1"),
        (["solve", "q", "--comparator", "fuzzy"], "argument --comparator: invalid choice"),
        (["solve", "q", "--base-url", "localhost:8000"], "base_url: expected an http:// or https:// URL"),
        (["solve", "q", "--timeout", "0"], "request_timeout: expected a number > 0, got 0.0"),
        (["solve", "q", "--model", "openai:"], "model: spec 'openai:' names no model after 'openai:'"),
        (["frobnicate"], "argument command: invalid choice"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"sift: error: {message}")


def test_unreadable_file_exits_2(tmp_path, capsys):
    path = tmp_path / "binary.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    assert cli.main(["solve", "--file", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"sift: error: cannot read question file '{path}'")


def test_format_event_covers_every_stage():
    assert cli.format_event({"stage": "inverse", "round": 3, "sticker": "S", "well_formed": True, "problems": []}) == (
        "[round 3] sticker rebuilt from the last solution:\n    S"
    )
    assert cli.format_event(
        {"stage": "prediction", "round": 1, "role": "predict_sticker", "answer": None, "truncated": True}
    ) == ("[round 1] answer from sticker: (none)  (cut off at the token limit)")
    assert cli.format_event({"stage": "direct", "answer": "7", "truncated": False}) == (
        "[fallback] no round agreed; direct chain-of-thought answer: 7"
    )
    malformed = {
        "stage": "sticker",
        "round": 1,
        "kind": "sticker",
        "sticker": "x",
        "well_formed": False,
        "problems": ["a", "b"],
    }
    assert cli.format_event(malformed).startswith("[round 1] sticker (generated)  (malformed: a; b):")
    bad_draft = {
        "stage": "inverse",
        "round": 3,
        "sticker": "S",
        "well_formed": False,
        "problems": ["no **Question:** line"],
    }
    assert cli.format_event(bad_draft).startswith(
        "[round 3] sticker rebuilt from the last solution  (malformed: no **Question:** line):"
    )
    cut = {"stage": "consensus", "round": 2, "agreed": False, "answers": ["3", "3"], "truncated": True}
    assert cli.format_event(cut) == "[round 2] no consensus: 3 vs 3  (a prediction was cut off at the token limit)"


def test_openai_without_key_or_server_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert cli.main(["solve", "q", "--model", "openai:gpt-4o-mini"]) == 2
    assert capsys.readouterr().err.startswith("sift: error: api_key: OpenAI itself needs an API key")


def test_model_loading_progress_is_kept_off_the_output(monkeypatch, capsys):
    model = ScriptedChatModel(script=script_for(["4"], ["4"]))

    def noisy_load(spec, connection=None, options=None):
        print("Converting and de-quantizing GGUF tensors...: 100%", file=sys.stderr)
        return model

    monkeypatch.setattr("sift_graph.cli.common.resolve_model", noisy_load)
    assert cli.main(["solve", QUESTION, "--json"]) == 0
    assert "Converting" not in capsys.readouterr().err


def test_a_failed_load_replays_what_the_loader_printed(monkeypatch, capsys):
    def broken_load(spec, connection=None, options=None):
        print("loader diagnostics", file=sys.stderr)
        raise RuntimeError("weights corrupt")

    monkeypatch.setattr("sift_graph.cli.common.resolve_model", broken_load)
    with pytest.raises(RuntimeError, match="weights corrupt"):
        cli.main(["solve", QUESTION])
    assert "loader diagnostics" in capsys.readouterr().err
