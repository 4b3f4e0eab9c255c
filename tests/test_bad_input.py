"""Every bad input or reply fails cleanly: one line, the right exit code, no traceback,
and no work lost (what finished stays saved and resumable)."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from sift_graph import SiftContext, build_sift_graph, cli
from sift_graph.checkpoints import RUN_DURABILITY, open_checkpointer
from sift_graph.faults import MalformedReplyError, describe_fault, is_transient_fault
from sift_graph.models.openai_errors import chat_completion_problem
from sift_graph.runs import SETTINGS_METADATA_KEY
from sift_graph.testing import QUESTION, ScriptedChatModel, script_for

from fault_server import FaultServer
from helpers import FAST_RETRY, answer_cli_with, flatten, start_sift

SAMPLE = Path(__file__).parent / "data" / "gsm8k_sample.jsonl"
MALFORMED = [
    pytest.param({"raw": '{"id": "x", "choi'}, "invalid JSON", id="invalid-json"),
    pytest.param({"raw": "<html><body>502 Bad Gateway</body></html>", "content_type": "text/html"}, "text", id="html"),
    pytest.param({"raw": '{"id": "x", "object": "chat.completion", "choices": []}'}, "no choices", id="no-choices"),
]


@pytest.fixture
def server():
    running = FaultServer(flatten(script_for(["4"], ["4"]))).start()
    yield running
    running.stop()


# --- a 200 that is not a chat completion ---------------------------------------------------


def test_what_is_not_a_chat_completion_is_named():
    assert chat_completion_problem({"choices": [{"message": {"content": "4"}}]}) is None
    assert chat_completion_problem("<html>") == "text ('<html>')"
    assert chat_completion_problem("") == "an empty body"
    assert chat_completion_problem([1]) == "a JSON list"
    assert chat_completion_problem({"choices": []}) == "a reply with no choices"
    assert chat_completion_problem({"choices": [{"text": "4"}]}) == "a choice with no message"


@pytest.mark.parametrize(("action", "what"), MALFORMED)
def test_a_malformed_reply_is_retried_then_one_clear_error_and_the_run_resumes(server, action, what):
    server.plan["sticker"] = [action] * 4  # every attempt of the first call
    graph = build_sift_graph(retry_policy=FAST_RETRY).compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    context = SiftContext(model="openai:test-model", base_url=server.base_url, request_timeout=2.0)
    with pytest.raises(MalformedReplyError) as raised:
        graph.invoke({"question": QUESTION}, config, context=context, durability=RUN_DURABILITY)
    message = describe_fault(raised.value)
    assert message.startswith(f"the server at {server.base_url}/ returned ")
    assert what in message and message.endswith(", not an OpenAI chat completion")
    assert is_transient_fault(raised.value) and server.count("sticker") == 4

    result = graph.invoke(None, config, context=context, durability=RUN_DURABILITY)  # the server is fine again
    assert result["answer"] == "4"


def test_the_cli_reports_a_malformed_reply_in_one_line_and_how_to_resume(server, tmp_path):
    server.plan["sticker"] = [MALFORMED[1].values[0]] * 4
    store = str(tmp_path / "runs.sqlite")
    process = start_sift(
        "solve", QUESTION, "--model", "openai:test-model", "--base-url", server.base_url, "--checkpoints", store
    )
    _, err = process.communicate(timeout=120)
    assert process.returncode == cli.EXIT_MODEL_FAULT
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"sift: error: model call failed: the server at {server.base_url}/ returned text (")
    assert lines[-2].startswith("sift: resume with: sift solve --resume ") and "Traceback" not in err


# --- results files and folders ---------------------------------------------------------------


def eval_argv(out: Path, *extra: str) -> list[str]:
    return ["eval", "--dataset", str(SAMPLE), "--limit", "2", "--model", "default", "--out", str(out), *extra]


@pytest.fixture
def scripted_eval(monkeypatch):
    model = ScriptedChatModel(script=script_for(["18"], ["18"], direct="3"))
    monkeypatch.setattr("sift_graph.cli.evaluate.load_model_quietly", lambda context: model)
    return model


def test_a_results_line_torn_inside_a_character_is_skipped_and_sealed(tmp_path, scripted_eval, capsys):
    out = tmp_path / "runs"
    assert cli.main(eval_argv(out, "--limit", "1")) == 0
    [results] = out.glob("*.jsonl")
    torn = json.dumps({"id": "x", "note": "café"}, ensure_ascii=False).encode()
    with results.open("ab") as file:
        file.write(torn[: torn.index("é".encode()) + 1])  # a crash mid-write: half of "é"
    capsys.readouterr()

    assert cli.main(eval_argv(out)) == 0  # resumes: the second question is done now
    assert cli.main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 questions x 1 sample(s), 2 graded" in printed
    assert "1 unreadable line(s) skipped" in printed
    assert results.read_bytes().isascii() is False  # the torn bytes stay, sealed on their own line
    assert all(json.loads(line) for line in results.read_bytes().split(b"\n")[-2:-1])


@pytest.mark.parametrize("where", ["a-file", "a-file/under-it"])
def test_an_out_that_cannot_be_a_results_folder_exits_2_before_any_model_loads(tmp_path, monkeypatch, capsys, where):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setattr("sift_graph.cli.evaluate.load_model_quietly", pytest.fail)
    assert cli.main(eval_argv(tmp_path / where)) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("sift: error: out: ") and len(err.splitlines()) == 1


def test_report_skips_a_finished_record_without_its_results(tmp_path, scripted_eval, capsys):
    out = tmp_path / "runs"
    assert cli.main(eval_argv(out)) == 0
    [results] = out.glob("*.jsonl")
    with results.open("a") as file:
        file.write(json.dumps({"id": "q9", "sample": 0, "question_sha": "x", "status": "ok"}) + "\n")
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    assert "1 unreadable line(s) skipped" in capsys.readouterr().out


# --- numbers, files, pipes and stores ----------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_before_a_run_starts(value, capsys):
    assert cli.main(["solve", QUESTION, f"--timeout={value}", "--checkpoints", "memory"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("sift: error: request_timeout: expected a number > 0")


def test_a_stored_run_with_a_non_finite_setting_is_refused_with_its_field(tmp_path, capsys, monkeypatch):
    store = str(tmp_path / "runs.sqlite")
    with open_checkpointer(store) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        stored = json.dumps({"request_timeout": math.nan})  # what an earlier version let through
        config = {"configurable": {"thread_id": "old"}, "metadata": {SETTINGS_METADATA_KEY: stored}}
        model = ScriptedChatModel(script=script_for(["4"], ["4"]), hold={"sticker": 1})
        model.before_reply = lambda role: (_ for _ in ()).throw(KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            graph.invoke({"question": QUESTION}, config, context=SiftContext(model=model), durability=RUN_DURABILITY)
    answer_cli_with(monkeypatch, ScriptedChatModel(script=script_for(["4"], ["4"])))
    assert cli.main(["solve", "--resume", "old", "--checkpoints", store]) == cli.EXIT_USAGE
    assert "request_timeout: expected a number > 0, got nan" in capsys.readouterr().err


def test_stdin_that_is_not_utf8_is_refused(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"How many \xff apples?")))
    assert cli.main(["solve", "--file", "-", "--checkpoints", "memory"]) == cli.EXIT_USAGE
    expected = "cannot read question file '-': not UTF-8 text (invalid start byte)"
    assert capsys.readouterr().err.strip() == f"sift: error: {expected}"


def test_a_reader_that_goes_away_stops_the_run_quietly(tmp_path):
    spec = tmp_path / "slow.json"
    spec.write_text(json.dumps({"script": script_for(["4"], ["4"]), "latency": 0.2}))
    process = start_sift("solve", QUESTION, "--model", f"scripted:{spec}", "--checkpoints", str(tmp_path / "r.sqlite"))
    assert process.stdout.readline().startswith("thread: ")
    process.stdout.close()  # `| head -1`
    process.wait(timeout=60)
    err = process.stderr.read()
    assert process.returncode == cli.EXIT_BROKEN_PIPE and "Traceback" not in err


def test_another_programs_sqlite_database_is_refused_untouched(tmp_path, capsys):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    before = path.read_bytes()
    assert cli.main(["solve", QUESTION, "--checkpoints", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    refused = "not a SIFT checkpoint store: it holds other tables (users)"
    assert err == f"sift: error: cannot open checkpoints '{path}': {refused}"
    assert path.read_bytes() == before


def test_round_budgets_are_bounded(capsys):
    assert cli.main(["solve", QUESTION, "--forward-rounds", "1000", "--checkpoints", "memory"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == "sift: error: forward_rounds: expected an integer in [0, 16], got 1000"


def test_a_reader_that_goes_away_mid_run_is_no_model_fault(tmp_path):
    spec = tmp_path / "slow.json"
    spec.write_text(json.dumps({"script": script_for(["4"], ["4"]), "latency": 0.2}))
    process = start_sift("solve", QUESTION, "--model", f"scripted:{spec}", "--checkpoints", str(tmp_path / "r.sqlite"))
    while not process.stdout.readline().startswith("question: "):  # the run has started
        assert process.poll() is None
    process.stdout.close()  # `| head -4`: the first stage is printed to nobody
    process.wait(timeout=60)
    err = process.stderr.read()
    assert process.returncode == cli.EXIT_BROKEN_PIPE, err
    assert "model call failed" not in err and "Traceback" not in err
    assert "sift: resume with: sift solve --resume" in err
