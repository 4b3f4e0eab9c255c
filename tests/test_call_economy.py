"""Fewer calls for the same answers: the CoT baseline is SIFT's fallback in `sift eval`,
an identical call is made once (in a run, and across runs with a call cache file), and
sampled runs get seeds of their own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sift_graph import SiftContext, cli
from sift_graph.cache import RunCache, SqliteCallCache, decode_reply, encode_reply
from sift_graph.calls import call_model, reply_from_message
from sift_graph.models.openai_spec import load_openai_model
from sift_graph.models.specs import Connection
from sift_graph.prompts import sticker_prompt
from sift_graph.testing import (
    FORWARD_STICKER,
    INVERSE_STICKER,
    QUESTION,
    REFINED_STICKER,
    STICKER,
    ScriptedChatModel,
    boxed,
    script_for,
)
from sift_graph.testing.fixtures import rephrased

from fault_server import FaultServer

SAMPLE = Path(__file__).parent / "data" / "gsm8k_sample.jsonl"
NEVER_AGREE = {"predict_sticker": boxed("1"), "predict_query_sticker": boxed("2"), "direct": boxed("3")}


def served_eval(server: FaultServer, out: Path, *extra: str) -> list[str]:
    """`sift eval` of one question against `server`. (With two, the fakes' replies, the
    same for every question, would make their inverse generations one identical call:
    the cache would rightly serve the second.)"""
    return [
        "eval", "--dataset", str(SAMPLE), "--limit", "1", "--model", "openai:test-model",
        "--base-url", server.base_url, "--timeout", "5", "--out", str(out), *extra,
    ]  # fmt: skip


def table_rows(printed: str) -> list[str]:
    """The table of `sift eval`'s output, without the footnote (wall time, savings)."""
    return [line for line in printed.splitlines() if re.match(r"(CoT|stage|fallback|method|-)", line)]


def answers(out: Path) -> list[tuple]:
    [results] = out.glob("*.jsonl")
    records = sorted((json.loads(line) for line in results.read_text().splitlines()), key=lambda r: r["id"])
    return [(r["id"], r["cot"]["answer"], r["sift"]["answer"], [x["answers"] for x in r["rounds"]]) for r in records]


@pytest.fixture
def changing_server():
    """Predictions never agree; every refinement returns a new sticker."""
    replies = {
        "sticker": STICKER,
        "forward": [rephrased(FORWARD_STICKER, k) for k in range(8)],
        "inverse": [rephrased(INVERSE_STICKER, k) for k in range(8)],
        **NEVER_AGREE,
    }
    server = FaultServer(replies).start()
    yield server
    server.stop()


@pytest.fixture
def unchanging_server():
    """Predictions never agree; every refinement returns the sticker it was given."""
    server = FaultServer({"sticker": STICKER, "forward": STICKER, "inverse": STICKER, **NEVER_AGREE}).start()
    yield server
    server.stop()


def test_eval_makes_11_requests_per_question_when_every_refinement_changes(changing_server, tmp_path, capsys):
    assert cli.main(served_eval(changing_server, tmp_path / "runs")) == 0
    assert len(changing_server.requests) == 11  # sticker, 3 x 2 predictions, 2 forward, inverse, CoT
    assert changing_server.count("direct") == 1  # the CoT: the fallback reuses it
    printed = capsys.readouterr().out
    assert "calls saved by reuse/cache: 1 (1 reused within runs, 0 from the call cache)" in printed


def test_an_unchanged_sticker_makes_no_call_twice_and_every_answer_stays(unchanging_server, tmp_path, capsys):
    assert cli.main(served_eval(unchanging_server, tmp_path / "cached")) == 0
    # sticker, 2 predictions, forward, inverse, CoT: the second forward optimization has
    # the first one's prompt, so it and the repeated rounds' predictions are served by
    # the run's own layer (and the fallback is the CoT).
    assert len(unchanging_server.requests) == 6 <= 7
    cached = table_rows(capsys.readouterr().out)

    requests = len(unchanging_server.requests)
    assert cli.main(served_eval(unchanging_server, tmp_path / "uncached", "--cache", "off")) == 0
    assert len(unchanging_server.requests) - requests == 11  # every call but the fallback: it is the CoT
    assert table_rows(capsys.readouterr().out) != []
    assert answers(tmp_path / "cached") == answers(tmp_path / "uncached")
    assert cached[0].startswith("method")


def test_a_rerun_into_a_new_folder_with_the_cache_file_makes_no_request(changing_server, tmp_path, capsys):
    cache = str(tmp_path / "calls.sqlite")
    assert cli.main(served_eval(changing_server, tmp_path / "first", "--cache", cache)) == 0
    first = capsys.readouterr().out
    made = len(changing_server.requests)

    assert cli.main(served_eval(changing_server, tmp_path / "again", "--cache", cache, "--comparator", "string")) == 0
    capsys.readouterr()
    assert cli.main(served_eval(changing_server, tmp_path / "rerun", "--cache", cache)) == 0
    assert len(changing_server.requests) == made  # nothing asked twice, whatever the folder or comparator
    rerun = capsys.readouterr().out
    assert table_rows(rerun) == table_rows(first)
    assert "calls saved by reuse/cache: 12 (1 reused within runs, 11 from the call cache)" in rerun
    assert answers(tmp_path / "rerun") == answers(tmp_path / "first")


def test_the_eval_cache_defaults_to_a_file_beside_the_checkpoints(changing_server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIFT_CHECKPOINTS", str(tmp_path / "store" / "runs.sqlite"))
    assert cli.main(served_eval(changing_server, tmp_path / "runs")) == 0
    assert f"call cache: {tmp_path / 'store' / 'cache.sqlite'}" in capsys.readouterr().err
    assert (tmp_path / "store" / "cache.sqlite").exists()


# --- a repeated round within one run ----------------------------------------------------


def test_a_round_that_repeats_the_last_is_recorded_cached_and_free(graph):
    script = {**script_for(["1"], ["2"]), "forward": STICKER}  # the refinement changes nothing
    model = ScriptedChatModel(script=script)
    events = []
    for mode, chunk in graph.stream(
        {"question": QUESTION}, context=SiftContext(model=model, inverse_rounds=0), stream_mode=["custom", "values"]
    ):
        events.append(chunk) if mode == "custom" else None
        result = chunk
    second = result["rounds"][1]
    assert second["predict_sticker"]["cached"] and second["predict_query_sticker"]["cached"]
    assert not result["rounds"][0]["predict_sticker"]["cached"]
    assert [e["cached"] for e in events if e["stage"] == "prediction" and e["round"] == 2] == [True, True]
    assert model.call_counts() == {
        "sticker": 1,
        "predict_sticker": 1,
        "predict_query_sticker": 1,
        "forward": 1,
        "direct": 1,
    }
    assert result["usage"]["predict_sticker"] == {
        "calls": 1,
        "input_tokens": 39,
        "output_tokens": 10,
        "reused_calls": 1,
    }
    assert second["usage"]["predict_sticker"] == {"calls": 0, "input_tokens": 0, "output_tokens": 0, "reused_calls": 1}


def test_with_the_cache_off_every_call_is_made(graph):
    script = {**script_for(["1"], ["2"]), "forward": STICKER}
    model = ScriptedChatModel(script=script)
    graph.invoke({"question": QUESTION}, context=SiftContext(model=model, inverse_rounds=0, cache="off"))
    assert model.call_counts()["predict_sticker"] == 2


def test_runs_never_share_their_layers(graph):
    model = ScriptedChatModel(script=script_for(["4"], ["4"]))
    for _ in range(2):
        graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    assert model.call_counts() == {"sticker": 2, "predict_sticker": 2, "predict_query_sticker": 2}


# --- what makes two calls the same call ---------------------------------------------------


def test_cache_keys_differ_by_model_server_decoding_and_seed(tmp_path):
    first, second = FaultServer({"sticker": STICKER}).start(), FaultServer({"sticker": STICKER}).start()
    try:
        cache = RunCache(SqliteCallCache(tmp_path / "calls.sqlite"))

        def call(server: FaultServer, name: str = "m", **settings) -> None:
            model = load_openai_model(name, Connection(base_url=server.base_url, timeout=5))
            context = SiftContext(model=f"openai:{name}", base_url=server.base_url, **settings)
            call_model(model, "sticker", sticker_prompt(QUESTION), context, None, cache)

        call(first)
        call(first)  # the same call: served by the cache
        assert len(first.requests) == 1
        call(first, name="other-model")
        call(second)
        call(first, max_tokens=64)
        call(first, temperature=0.7, seed=1)
        call(first, temperature=0.7, seed=2)
        call(first, temperature=0.7, seed=2)  # the same sample again: served
        call(first, temperature=0.7, seed=2, top_p=0.5)
        assert (len(first.requests), len(second.requests)) == (6, 1)
        assert [request.get("seed") for request in first.requests[-3:]] == [1, 2, 2]
    finally:
        first.stop()
        second.stop()


def test_scripted_models_with_other_scripts_never_share_a_reply():
    cache = RunCache()
    context = SiftContext()
    one = ScriptedChatModel(script={"sticker": STICKER})
    other = ScriptedChatModel(script={"sticker": REFINED_STICKER})
    assert call_model(one, "sticker", "p", context, None, cache).text == STICKER
    assert call_model(other, "sticker", "p", context, None, cache).text == REFINED_STICKER


def test_a_stored_reply_keeps_what_sift_reads_of_it():
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration

    message = AIMessage(
        content="final \\boxed{4}",
        additional_kwargs={"reasoning_content": "think"},
        response_metadata={"finish_reason": "length"},
        usage_metadata={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
    )
    [revived] = decode_reply(encode_reply([ChatGeneration(message=message)]))
    assert revived.message == message


def test_a_reply_in_content_blocks_is_read_as_its_text_blocks_with_the_thinking_apart():
    from langchain_core.messages import AIMessage

    blocks = [
        {"type": "reasoning", "reasoning": "not text"},
        {"type": "text", "text": "<think>3 + 2</think>"},
        {"type": "text", "text": "So \\boxed{5}"},
    ]
    reply = reply_from_message(AIMessage(content=blocks))
    assert (reply.reasoning, reply.text) == ("3 + 2", "So \\boxed{5}")


@pytest.mark.parametrize("kind", ["garbage", "under-a-file", "foreign"])
def test_a_cache_file_that_cannot_be_one_is_a_one_line_error(tmp_path, capsys, kind):
    import sqlite3

    path = tmp_path / "calls.sqlite"
    if kind == "garbage":
        path.write_bytes(b"this is not a database, not even close" * 50)
    elif kind == "under-a-file":
        path.write_text("a file")
        path = path / "calls.sqlite"
    else:
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE users (id INTEGER)")
    argv = ["eval", "--dataset", str(SAMPLE), "--model", "default", "--cache", str(path), "--out", str(tmp_path / "o")]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sift: error: cache: cannot use '{path}' as a call cache: ") and "\n" not in err


# --- samples ------------------------------------------------------------------------------


def test_each_sample_has_its_own_reproducible_seed(tmp_path, monkeypatch, capsys):
    model = ScriptedChatModel(script=script_for(["18"], ["18"], direct="3"))
    monkeypatch.setattr("sift_graph.cli.evaluate.load_model_quietly", lambda context: model)
    argv = ["eval", "--dataset", str(SAMPLE), "--limit", "1", "--model", "default", "--samples", "3",
            "--temperature", "0.7", "--seed", "40", "--cache", "off", "--out", str(tmp_path / "runs")]  # fmt: skip
    assert cli.main(argv) == 0
    seeds = [call.kwargs.get("seed") for call in model.calls]
    assert sorted(set(seeds)) == [40, 41, 42]
    assert all(seeds.count(seed) == 4 for seed in (40, 41, 42))  # CoT + 3 SIFT calls of one sample share it


def test_greedy_calls_carry_no_seed(graph):
    model = ScriptedChatModel(script=script_for(["4"], ["4"]))
    graph.invoke({"question": QUESTION}, context=SiftContext(model=model, seed=7))
    assert all("seed" not in call.kwargs for call in model.calls)
