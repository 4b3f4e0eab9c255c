"""`sift view`'s page data (diffs, filters, paired counts) and its pages over HTTP, on
result sets made with the scripted model; bad input at the command line."""

from __future__ import annotations

import copy
import json
import re
import sqlite3
import uuid

import pytest
from starlette.testclient import TestClient

from sift_graph import SiftContext, cli
from sift_graph.checkpoints import SqliteFileSaver
from sift_graph.evaluation.results import load_result_sets
from sift_graph.evaluation.stats import mcnemar_exact
from sift_graph.graph import build_sift_graph
from sift_graph.serve import ServeSettings, SiftService, create_app
from sift_graph.testing import QUESTION, ScriptedChatModel
from sift_graph.view import ResultSources, create_view_app, runs
from sift_graph.view.cards import round_cards, word_diff
from sift_graph.view.questions import compare_records, filter_rows, flags_of, question_rows, sort_rows

from helpers import EVERY_STAGE, postgres_url, write_toy_result_sets


@pytest.fixture
async def toy_sets(tmp_path):
    """(folder, staged set id, rival set id, {set id: records})."""
    first, second = await write_toy_result_sets(tmp_path)
    records = {f"{s.dataset}-{s.digest}": s.records for s in load_result_sets(tmp_path)}
    return tmp_path, first, second, records


def by_id(records):
    return {record["id"]: record for record in records}


def test_word_diff_marks_added_and_removed_words_and_invented_numbers_not_list_markers():
    before = "**Conditions:**\n1. Ann has 3 apples.\n**Question:** How many?"
    after = "**Conditions:**\n1. Ann has 3 apples.\n2. She eats 4.\n**Question:** How many now?"
    pieces = word_diff(before, after, {"4", "2"})
    added = "".join(p["text"] for p in pieces if p["change"] == "added")
    assert "She eats 4." in added and "now?" in added
    assert [p["text"] for p in pieces if p["change"] == "removed"] == ["many?"]
    assert [p["text"] for p in pieces if p["invented"]] == ["4."]  # "2." starts a line: a list marker
    assert "".join(p["text"] for p in pieces if p["change"] != "removed") == after
    assert all(p["change"] == "same" for p in word_diff(None, after))


def test_round_cards_diff_each_sticker_against_the_previous_round(toy_sets):
    _, first, _, records = toy_sets
    q2 = by_id(records[first])["q2"]  # agreed in round 2, after forward optimization
    cards = round_cards(q2["rounds"], q2["question"])
    assert [(c["round"], c["stage"], c["agreed"]) for c in cards] == [(1, 1, False), (2, 2, True)]
    assert all(p["change"] == "same" for p in cards[0]["sticker"])
    changes = {p["change"] for p in cards[1]["sticker"]}
    assert changes == {"same", "added", "removed"}
    assert [p["answer"] for p in cards[1]["predictions"]] == ["7", "7"]
    # the toy question is about pears: the scripted sticker's 3 apples and 2 more are made up
    assert cards[0]["invented"] == ["2", "3"]
    q3 = by_id(records[first])["q3"]  # no agreement: its third round is inverse generation
    inverse = round_cards(q3["rounds"], q3["question"])[2]
    assert inverse["kind"] == "inverse" and inverse["draft"] is not None

    def text(pieces, *changes):
        return "".join(p["text"] for p in pieces if p["change"] in changes)

    # the draft against the round before; the sticker against the draft (forward optimization's edits)
    assert text(inverse["draft"], "same", "removed") == q3["rounds"][1]["sticker"]
    assert text(inverse["sticker"], "same", "added") == q3["rounds"][2]["sticker"]
    assert text(inverse["sticker"], "same", "removed") == q3["rounds"][2]["draft"]


def test_rows_carry_outcome_exit_and_flags_and_filter_and_sort(toy_sets):
    _, first, _, records = toy_sets
    rows = {row["id"]: row for row in question_rows(records[first])}
    assert {q: (r["outcome"], r["exit"]) for q, r in rows.items()} == {
        "q1": ("sift_only", "1"),
        "q2": ("both", "2"),
        "q3": ("both", "fallback"),
    }
    assert "invented" in rows["q1"]["flags"]
    every = list(rows.values())
    assert [r["id"] for r in filter_rows(every, outcome="sift_only")] == ["q1"]
    assert [r["id"] for r in filter_rows(every, outcome="both", exit="2")] == ["q2"]
    assert filter_rows(every, flag="truncated") == []
    assert [r["id"] for r in sort_rows(every, "tokens")] == ["q3", "q2", "q1"]  # 10, 6 and 3 calls
    assert [r["id"] for r in sort_rows(every, "tokens-asc")] == ["q1", "q2", "q3"]


def test_flags_follow_what_the_report_counts():
    record = {
        "question": "Bo has 7 figs.",
        "status": "ok",
        "sift": {"correct": True, "consensus_round": None},
        "cot": {"truncated": False},
        "rounds": [
            {"round": 1, "kind": "sticker", "sticker": "1. Bo has 7 figs.", "sticker_problems": []},
            {"round": 2, "kind": "forward", "sticker": "1. Bo has 7 figs.", "sticker_problems": ["no question"]},
        ],
    }
    for detail in record["rounds"]:
        detail.update(answers=["7", "8"], agreed=False, truncated=[False, False], draft=None, draft_problems=[])
    assert flags_of(record) == ["malformed", "unchanged"]
    cut = copy.deepcopy(record)
    cut["rounds"][0]["truncated"] = [True, False]
    cut["rounds"][1]["sticker"] = "1. Bo has 9 figs."
    assert flags_of(cut) == ["truncated", "malformed", "invented"]


def test_compare_pairs_questions_counts_and_tests_them(toy_sets):
    _, first, second, records = toy_sets
    sift = compare_records(records[first], records[second], "sift")
    # staged: q1 5 right, q2 7 right, q3 (fallback to CoT 2) right; rival: 7 everywhere (q2 right)
    assert sift["counts"] == {"both": 1, "first_only": 2, "second_only": 0, "neither": 0}
    assert sift["p_value"] == mcnemar_exact(2, 0)
    assert [row["key"] for row in sift["rows"] if row["differ"]] == ["q1", "q3"]
    cot = compare_records(records[first], records[second], "cot")
    # staged CoT: 4, 7, 2 (q2 and q3 right); rival CoT: 5 everywhere (q1 right)
    assert cot["counts"] == {"both": 0, "first_only": 2, "second_only": 1, "neither": 0}
    assert cot["p_value"] == mcnemar_exact(2, 1)


@pytest.fixture
def client(toy_sets):
    folder, *_ = toy_sets
    return TestClient(create_view_app(ResultSources([folder])))


def test_pages_of_a_result_set(client, toy_sets):
    _, first, second, _ = toy_sets
    index = client.get("/").text
    assert first in index and second in index
    summary = client.get(f"/sets/{first}").text
    assert "accuracy % [95% CI]" in summary and "McNemar vs CoT" in summary and "Right by SIFT only: q1." in summary
    listed = client.get(f"/sets/{first}/questions?outcome=sift_only").text
    assert f"/sets/{first}/questions/q1" in listed and "/questions/q2" not in listed
    page = client.get(f"/sets/{first}/questions/q2").text
    assert 'class="added"' in page and 'class="removed"' in page
    assert "sticker only (P_S)" in page and "query + sticker (P_QS)" in page and "CoT baseline" in page
    compared = client.get(f"/compare?a={first}&b={second}&only=differ").text
    assert "2 first only vs 0 second only, p = 0.5" in compared


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/sets/toy-000000000000", 404, "no result set"),
        ("/sets/{first}/questions/q9", 404, "no finished question"),
        ("/sets/{first}/questions?outcome=sift", 400, "outcome: expected one of"),
        ("/runs", 404, "shows no checkpoint store"),
        ("/static/../../pyproject.toml", 404, ""),
    ],
)
def test_bad_ids_are_a_message_not_a_500(client, toy_sets, url, status, message):
    response = client.get(url.format(first=toy_sets[1]))
    assert response.status_code == status and message in response.text


def test_a_torn_or_foreign_file_is_a_message_on_the_page(client, toy_sets):
    folder, first, _, records = toy_sets
    with open(folder / f"{first}.jsonl", "a") as lines:
        lines.write('{"id": "q4", "sample": 0, "status": "o')  # a write cut short
    assert "1 unreadable line(s) skipped" in client.get(f"/sets/{first}").text
    foreign = {**by_id(records[first])["q1"], "id": "q5", "rounds": [{"sticker": 5}]}  # passes for a record
    with open(folder / f"{first}.jsonl", "a") as lines:
        lines.write("\n" + json.dumps(foreign) + "\n")
    page = client.get(f"/sets/{first}/questions")
    assert page.status_code == 422 and "holds a foreign record" in page.text
    (folder / "toy-ffffffffffff.config.json").write_text("not json")
    index = client.get("/")
    assert index.status_code == 200 and "unreadable result-set description" in index.text
    foreign = client.get("/sets/toy-ffffffffffff")
    assert foreign.status_code == 422 and "unreadable result-set description" in foreign.text


def sqlite_run(path, thread_id="run-1"):
    """A finished run (every stage, then the fallback) in a SQLite checkpoint store."""
    with SqliteFileSaver.open(str(path)) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        context = SiftContext(model=ScriptedChatModel(script=EVERY_STAGE))
        graph.invoke({"question": QUESTION}, {"configurable": {"thread_id": thread_id}}, context=context)


async def test_runs_of_a_checkpoint_store_read_only(tmp_path):
    from sift_graph.view import open_run_store

    path = tmp_path / "runs.sqlite"
    sqlite_run(path)
    before = path.read_bytes()
    async with open_run_store(str(path)) as saver:
        client = TestClient(create_view_app(saver=lambda: saver))
        assert "/runs/run-1" in client.get("/runs").text
        run = client.get("/runs/run-1").text
        assert "finished: 9 (fallback)" in run and "Round 3" in run and "data-poll" not in run
        assert re.search(r"time per step: generate_sticker \d+\.\d\d s, predict_sticker", run)
        history = client.get("/runs/run-1/history").text
        assert "generate_sticker" in history and "direct_answer" in history
        assert re.search(r'<td class="num">\d+\.\d\d s</td>', history)  # how long each step took
        assert client.get("/runs/run-2").status_code == 404
        assert client.get("/runs/run%20one").status_code == 400
    assert path.read_bytes() == before  # read-only


def test_sift_serve_shows_its_own_runs_under_view():
    service = SiftService(
        ServeSettings(context=SiftContext(model=ScriptedChatModel(script=EVERY_STAGE)), checkpoints="memory")
    )
    with TestClient(create_app(service)) as client:
        reply = client.post(
            "/v1/chat/completions", json={"model": "sift", "messages": [{"role": "user", "content": QUESTION}]}
        )
        thread_id = reply.headers["x-sift-thread-id"]
        assert f'href="/view/runs/{thread_id}"' in client.get("/view/runs").text
        assert f'href="/view/runs/{thread_id}"' in client.get("/view/").text  # its runs are all it shows
        assert "Round 3" in client.get(f"/view/runs/{thread_id}").text
        assert client.get("/view/sets/anything").status_code == 404  # no files a client could name


def bad_sqlite(tmp_path):
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    return str(path)


def foreign_sqlite(tmp_path):
    path = tmp_path / "foreign.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (text)")
    return str(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (lambda tmp: ["view", str(tmp / "missing")], "is not a folder of result sets"),
        (lambda tmp: ["view", str(tmp)], "holds no result sets"),
        (lambda tmp: ["view", "--checkpoints", bad_sqlite(tmp)], "cannot open checkpoints"),
        (lambda tmp: ["view", "--checkpoints", foreign_sqlite(tmp)], "not a SIFT checkpoint store"),
        (lambda tmp: ["view", "--checkpoints", str(tmp / "none.sqlite")], "no such file"),
        (lambda tmp: ["view", "--checkpoints", "postgresql://sift:sift@127.0.0.1:1/sift"], "cannot open checkpoints"),
        (lambda tmp: ["view", str(tmp), "--port", "70000"], "--port: expected 0 to 65535"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_serving(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIFT_CHECKPOINTS", str(tmp_path / "absent.sqlite"))
    assert cli.main(argv(tmp_path)) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


async def test_runs_of_a_postgresql_store():
    from sift_graph.checkpoints import aopen_checkpointer
    from sift_graph.view import open_run_store

    url = postgres_url()
    thread_id = f"view-{uuid.uuid4().hex[:12]}"
    async with aopen_checkpointer(url) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        context = SiftContext(model=ScriptedChatModel(script=EVERY_STAGE))
        await graph.ainvoke({"question": QUESTION}, {"configurable": {"thread_id": thread_id}}, context=context)
    async with open_run_store(url) as saver:
        threads = await runs.threads(saver)
        assert thread_id in [thread["thread_id"] for thread in threads]
        page = await runs.run_page(runs.reader_graph(saver), thread_id)
        assert page is not None and page["finished"] and len(page["rounds"]) == 3
