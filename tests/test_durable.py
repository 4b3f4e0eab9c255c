"""Durable runs on every checkpointer: a run that fails mid-round resumes where it
stopped, keeps every finished model call, and ends as a clean run does."""

from __future__ import annotations

import json
import os
import signal
import uuid

import pytest
from langgraph.types import RetryPolicy

from sift_graph import SiftContext, build_sift_graph, cli
from sift_graph.checkpoints import (
    RUN_DURABILITY,
    aopen_checkpointer,
    checkpoint_kind,
    describe_checkpoints,
    open_checkpointer,
)
from sift_graph.testing import QUESTION, ScriptedChatModel, script_for

from helpers import EVERY_STAGE, answer_cli_with, broken_model

# Where a run breaks: mid-round 1 (one prediction done, its sibling failing), in round 2's
# forward optimization, in round 3's inverse generation, and in the fallback.
BREAK_POINTS = ["predict_query_sticker", "forward", "inverse", "direct"]
# One attempt: the scripted fault must end the run, as a crash or an outage would.
NO_RETRY = RetryPolicy(max_attempts=1)


def new_thread() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def clean_run(graph) -> tuple[dict, dict]:
    model = ScriptedChatModel(script=EVERY_STAGE)
    result = graph.invoke({"question": QUESTION}, new_thread(), context=SiftContext(model=model))
    return result, model.call_counts()


@pytest.mark.parametrize("broken_role", BREAK_POINTS)
def test_a_broken_run_resumes_and_repeats_no_finished_call(checkpoints, broken_role):
    with open_checkpointer(checkpoints) as saver:
        graph = build_sift_graph(retry_policy=NO_RETRY).compile(checkpointer=saver)
        clean, clean_calls = clean_run(graph)

        config = new_thread()
        model = broken_model(broken_role, graph, config)
        context = SiftContext(model=model)
        with pytest.raises(ConnectionError):
            graph.invoke({"question": QUESTION}, config, context=context, durability=RUN_DURABILITY)
        assert graph.get_state(config).next  # stopped part-way, with work saved
        resumed = graph.invoke(None, config, context=context, durability=RUN_DURABILITY)

    assert resumed == clean
    # The failed call raised before replying, so every call counted here finished once.
    assert model.call_counts() == clean_calls


@pytest.mark.parametrize("broken_role", BREAK_POINTS)
async def test_a_broken_async_run_resumes_and_repeats_no_finished_call(checkpoints, broken_role):
    async with aopen_checkpointer(checkpoints) as saver:
        graph = build_sift_graph(retry_policy=NO_RETRY).compile(checkpointer=saver)
        clean_model = ScriptedChatModel(script=EVERY_STAGE)
        clean = await graph.ainvoke({"question": QUESTION}, new_thread(), context=SiftContext(model=clean_model))

        config = new_thread()
        model = broken_model(broken_role, graph, config)
        context = SiftContext(model=model)
        with pytest.raises(ConnectionError):
            await graph.ainvoke({"question": QUESTION}, config, context=context, durability=RUN_DURABILITY)
        resumed = await graph.ainvoke(None, config, context=context, durability=RUN_DURABILITY)

    assert resumed == clean
    assert model.call_counts() == clean_model.call_counts()


async def test_one_sqlite_file_serves_async_and_sync_runs(tmp_path):
    """The SQLite store's async face (used by `ainvoke`) and its sync face write the same
    file the same way: a run broken under ainvoke resumes under invoke, and its history
    reads the same both ways."""
    setting = str(tmp_path / "runs.sqlite")
    clean_model = ScriptedChatModel(script=EVERY_STAGE)
    clean = build_sift_graph().compile().invoke({"question": QUESTION}, context=SiftContext(model=clean_model))
    config = new_thread()
    async with aopen_checkpointer(setting) as saver:
        graph = build_sift_graph(retry_policy=NO_RETRY).compile(checkpointer=saver)
        model = broken_model("inverse", graph, config)
        context = SiftContext(model=model)
        with pytest.raises(ConnectionError):
            await graph.ainvoke({"question": QUESTION}, config, context=context, durability=RUN_DURABILITY)
        async_history = [state.config async for state in graph.aget_state_history(config)]
        assert (await graph.aget_state(config)).next == ("inverse_generate",)
    with open_checkpointer(setting) as saver:
        graph = build_sift_graph(retry_policy=NO_RETRY).compile(checkpointer=saver)
        assert [state.config for state in graph.get_state_history(config)] == async_history
        resumed = graph.invoke(None, config, context=context, durability=RUN_DURABILITY)
    assert resumed == clean
    assert model.call_counts() == clean_model.call_counts()  # no finished call made twice


def test_replaying_from_a_past_checkpoint_gives_the_same_answer(checkpoints):
    """Nodes are idempotent: re-running from a past step reproduces the run's outcome."""
    with open_checkpointer(checkpoints) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        model = ScriptedChatModel(script=script_for(["4", "5"], ["3", "5"]))
        config = new_thread()
        first = graph.invoke(
            {"question": QUESTION}, config, context=SiftContext(model=model), durability=RUN_DURABILITY
        )
        history = list(graph.get_state_history(config))
        mid_run = next(s for s in history if s.next == ("forward_optimize",))
        replay_model = ScriptedChatModel(script=script_for(["5"], ["5"]))
        replayed = graph.invoke(
            None, mid_run.config, context=SiftContext(model=replay_model), durability=RUN_DURABILITY
        )

    assert replayed["answer"] == first["answer"] == "5"
    assert replayed["rounds"] == first["rounds"] and replayed["usage"] == first["usage"]
    assert replay_model.call_counts() == {"forward": 1, "predict_sticker": 1, "predict_query_sticker": 1}


def test_state_history_records_every_stage(checkpoints):
    with open_checkpointer(checkpoints) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        config = new_thread()
        context = SiftContext(model=ScriptedChatModel(script=EVERY_STAGE))
        # "sync": with "async", LangGraph 1.2 may serialize the predictions' join barrier
        # after the next round has begun filling it, and the history would show it firing.
        graph.invoke({"question": QUESTION}, config, context=context, durability=RUN_DURABILITY)
        steps = [snapshot.next for snapshot in reversed(list(graph.get_state_history(config)))]

    assert steps[1] == ("generate_sticker",)
    assert ("forward_optimize",) in steps and ("inverse_generate",) in steps
    assert steps[-2:] == [("direct_answer",), ()]


def test_checkpoint_settings_are_validated_and_passwords_masked():
    assert checkpoint_kind("memory") == "memory"
    assert checkpoint_kind("runs/x.sqlite") == "sqlite"
    assert checkpoint_kind("postgresql://u:secret@db:5432/sift") == "postgres"
    with pytest.raises(ValueError, match=r"^checkpoints: "):
        checkpoint_kind("  ")
    assert describe_checkpoints("postgresql://u:secret@db:5432/sift") == "postgresql://u@db:5432/sift"


# --- the CLI: thread line, --resume, stored settings ----------------------------------


@pytest.fixture
def cli_runs(tmp_path, monkeypatch):
    """CLI runs kept in a file of the test's own, answered by one scripted model."""
    monkeypatch.setenv("SIFT_CHECKPOINTS", str(tmp_path / "runs.sqlite"))
    model = ScriptedChatModel(script=EVERY_STAGE)
    answer_cli_with(monkeypatch, model)
    return model


def thread_of(text: str) -> str:
    first = text.splitlines()[0]
    assert first.startswith("thread: ")
    return first.removeprefix("thread: ")


def test_cli_resume_after_ctrl_c_continues_the_run(cli_runs, capsys):
    clean_calls = {
        "sticker": 1,
        "predict_sticker": 3,
        "predict_query_sticker": 3,
        "forward": 2,
        "inverse": 1,
        "direct": 1,
    }

    def ctrl_c_at_inverse(role: str) -> None:
        if role == "inverse" and not interrupted:
            interrupted.append(role)
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, while the call is in flight

    interrupted: list[str] = []
    cli_runs.before_reply = ctrl_c_at_inverse
    cli_runs.hold = {"inverse": 1}  # the first inverse generation never answers by itself
    assert cli.main(["solve", QUESTION, "--max-tokens", "77", "--json"]) == cli.EXIT_INTERRUPTED
    out, err = capsys.readouterr()
    thread = thread_of(err)
    assert out == ""
    assert f"sift: resume with: sift solve --resume {thread}" in err.splitlines()

    cli_runs.hold, cli_runs.before_reply = {}, None  # the model answers now
    assert cli.main(["solve", "--resume", thread, "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert thread_of(err) == thread and result["thread_id"] == thread
    assert "resuming at: inverse_generate" in err.splitlines()
    assert result["answer"] == "9" and [r["round"] for r in result["rounds"]] == [1, 2, 3]
    # Only the call in flight at Ctrl-C (the first inverse generation) is made again.
    assert cli_runs.call_counts() == {**clean_calls, "inverse": 2}
    # The run goes on with the settings it was started with.
    assert {call.kwargs["max_tokens"] for call in cli_runs.calls} == {77}


def test_cli_resume_of_a_finished_run_prints_it_again_with_no_calls(cli_runs, capsys):
    assert cli.main(["solve", QUESTION, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    calls = len(cli_runs.calls)
    assert cli.main(["solve", "--resume", first["thread_id"], "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == first
    assert "run already finished: nothing to resume" in err
    assert len(cli_runs.calls) == calls


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["solve", "--resume", "no-such-thread"], "no run with thread 'no-such-thread' in "),
        (["solve", "--resume", "t", "a question"], "--resume continues a stored run: give no question with it"),
        (
            ["solve", "q", "--checkpoints", " "],
            "checkpoints: expected 'memory', a SQLite file path or a postgresql:// URL",
        ),
    ],
)
def test_cli_resume_errors_exit_2_with_one_line(cli_runs, argv, message, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"sift: error: {message}")
    assert len([line for line in err if line.startswith("sift: error")]) == 1


def test_cli_resume_from_a_missing_file_leaves_no_file_behind(cli_runs, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "runs.sqlite"
    assert cli.main(["solve", "--resume", "t-1", "--checkpoints", str(missing)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"sift: error: no run with thread 't-1' in {missing}: no such file"
    assert not missing.parent.exists()


def test_cli_unreachable_database_exits_2(cli_runs, capsys):
    # A closed loopback port: the connection is refused at once.
    assert cli.main(["solve", "q", "--checkpoints", "postgresql://u:secret@127.0.0.1:9/sift"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "sift: error: cannot open checkpoints 'postgresql://u@127.0.0.1:9/sift'" in err
    assert "secret" not in err
