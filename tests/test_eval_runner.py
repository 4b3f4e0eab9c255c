"""The eval runner with scripted models: records, stages, errors, resume, concurrency."""

from __future__ import annotations

import json

from langchain_core.outputs import ChatResult

from sift_graph.context import SiftContext
from sift_graph.evaluation.datasets import Question
from sift_graph.evaluation.records import usage_by_stage
from sift_graph.evaluation.results import ResultStore, load_result_sets, read_records
from sift_graph.evaluation.runner import run_eval
from sift_graph.evaluation.summary import summarize
from sift_graph.testing import (
    EXIT_SCRIPTS,
    FORWARD_STICKER,
    INVERSE_STICKER,
    STICKER,
    ScriptedChatModel,
    boxed,
)

from helpers import TOY_QUESTIONS, staged_model, toy_config

# The toy questions, the staged model and the config live in helpers: the viewer's tests
# draw pages from the same result sets.
QUESTIONS = TOY_QUESTIONS
config = toy_config


async def test_records_carry_grades_exit_stages_and_stage_costs(tmp_path):
    model = staged_model()
    store = ResultStore(tmp_path, "toy", config())
    outcome = await run_eval(QUESTIONS, store=store, context=SiftContext(model=model), concurrency=1, progress=None)
    assert (outcome.total, outcome.skipped, outcome.finished, outcome.errors) == (3, 0, 3, 0)
    records = {record["id"]: record for record in store.records()}
    assert [records[q]["sift"]["exit_stage"] for q in ("q1", "q2", "q3")] == [1, 2, None]
    # q3's fallback is its CoT reply, reused: no eleventh call.
    assert [records[q]["sift"]["calls"] for q in ("q1", "q2", "q3")] == [3, 6, 10]
    assert records["q3"]["saved_calls"] == {"reused": 1, "from_cache": 0}
    assert {q: records[q]["cot"]["correct"] for q in records} == {"q1": False, "q2": True, "q3": True}
    q3 = records["q3"]["stage_costs"]
    assert [q3[key]["calls"] for key in ("1", "2", "3", "fallback")] == [3, 3, 4, 0]
    # Token counts per stage add up to SIFT's own total.
    total = sum(cost["input_tokens"] + cost["output_tokens"] for cost in q3.values())
    assert total == records["q3"]["sift"]["input_tokens"] + records["q3"]["sift"]["output_tokens"]
    assert all(r["dataset"] == "toy" and r["config"] == store.config.digest() for r in records.values())

    # a record keeps what explains a run: each round's sticker, an inverse draft, both solutions
    last = records["q3"]["rounds"][-1]
    assert last["kind"] == "inverse" and last["draft"] == INVERSE_STICKER and last["sticker"] == FORWARD_STICKER
    assert last["solutions"] == [boxed("3"), boxed("6")] and last["truncated"] == [False, False]
    assert records["q3"]["cot"]["solution"] == boxed("2") and records["q3"]["cot"]["truncated"] is False

    summary = summarize(store.records())
    assert [summary["columns"][c]["correct"] for c in ("cot", "stage1", "stage2", "stage3")] == [2, 3, 3, 3]
    assert summary["exit_shares"]["fallback"] == 1 / 3


def test_usage_by_stage_sums_each_rounds_own_calls():
    one = {"calls": 1, "input_tokens": 10, "output_tokens": 1}
    rounds = [
        {"kind": "sticker", "usage": {"sticker": one, "predict_sticker": one, "predict_query_sticker": one}},
        {"kind": "forward", "usage": {"forward": one, "predict_sticker": one}},
    ]
    costs = usage_by_stage(rounds, {"direct": one, "sticker": one})
    assert costs == {
        "1": {"calls": 3, "input_tokens": 30, "output_tokens": 3},
        "2": {"calls": 2, "input_tokens": 20, "output_tokens": 2},
        "3": {"calls": 0, "input_tokens": 0, "output_tokens": 0},
        "fallback": {"calls": 1, "input_tokens": 10, "output_tokens": 1},
    }


class PoisonedModel(ScriptedChatModel):
    """Fails (not transiently: no retries) on any prompt that mentions 'poison'."""

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        if "poison" in str(messages[-1].content):
            raise ValueError("the model choked")
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


async def test_a_failing_question_is_recorded_and_the_run_goes_on_then_a_rerun_retries_it(tmp_path):
    questions = [Question("a", "Ann has 5 pears. How many?", "5"), Question("b", "A poison apple. How many?", "1")]
    always_five = EXIT_SCRIPTS["round-1"]  # every prediction and the fallback answer 5
    store = ResultStore(tmp_path, "toy", config())
    outcome = await run_eval(
        questions, store=store, context=SiftContext(model=PoisonedModel(script=always_five)), progress=None
    )
    assert (outcome.finished, outcome.errors) == (2, 1) and "the model choked" in outcome.first_error
    statuses = {r["id"]: r["status"] for r in store.records()}
    assert statuses == {"a": "ok", "b": "error"}

    # The rerun does only the failed question; its success replaces the error, never adds to it.
    outcome = await run_eval(
        questions, store=store, context=SiftContext(model=ScriptedChatModel(script=always_five)), progress=None
    )
    assert (outcome.skipped, outcome.finished, outcome.errors) == (1, 1, 0)
    assert len(read_records(store.path)[0]) == 3
    assert {r["id"]: r["status"] for r in store.records()} == {"a": "ok", "b": "ok"}
    assert summarize(store.records())["graded"] == 2


async def test_rerun_skips_done_questions_and_a_new_config_is_a_new_result_set(tmp_path):
    store = ResultStore(tmp_path, "toy", config())
    await run_eval(QUESTIONS, store=store, context=SiftContext(model=staged_model()), concurrency=1, progress=None)
    model = staged_model()
    outcome = await run_eval(QUESTIONS, store=store, context=SiftContext(model=model), progress=None)
    assert (outcome.skipped, outcome.finished) == (3, 0) and model.calls == []

    other = ResultStore(tmp_path, "toy", config(max_tokens=128))
    assert other.path != store.path
    await run_eval(QUESTIONS[:1], store=other, context=SiftContext(model=staged_model()), progress=None)
    sets = load_result_sets(tmp_path)
    assert sorted(len(s.records) for s in sets) == [1, 3]
    described = json.loads(other.config_path.read_text())
    assert described["config"]["max_tokens"] == 128 and described["digest"] == other.config.digest()


async def test_an_edited_question_is_not_taken_for_done(tmp_path):
    store = ResultStore(tmp_path, "toy", config())
    await run_eval(QUESTIONS[:1], store=store, context=SiftContext(model=staged_model()), progress=None)
    edited = [Question("q1", "Ann has 6 pears. How many pears?", "6")]
    outcome = await run_eval(edited, store=store, context=SiftContext(model=staged_model()), progress=None)
    assert outcome.finished == 1


async def test_concurrency_is_bounded_and_the_cot_runs_alone(tmp_path):
    always = EXIT_SCRIPTS["round-1"]  # every prediction and the fallback answer 5
    questions = [Question(str(i), f"Question number {i}?", "5") for i in range(8)]
    # A question has at most 2 calls in flight: its CoT call alone, then SIFT's
    # calls, of which only the prediction pair overlap. (The latency makes calls overlap
    # wherever the runner lets them; the bounds hold whatever the timing.)
    for concurrency in (1, 2):
        model = ScriptedChatModel(script=always, latency=0.02)
        store = ResultStore(tmp_path, "toy", config(max_tokens=concurrency))
        await run_eval(questions, store=store, context=SiftContext(model=model), concurrency=concurrency, progress=None)
        assert model.max_in_flight <= 2 * concurrency
        assert len(store.records()) == 8
        if concurrency == 1:  # one question at a time: no call of any question beside a CoT call
            calls = model.calls
            for cot in (call for call in calls if call.role == "direct"):
                assert [
                    c for c in calls if c is not cot and c.started < cot.finished and c.finished > cot.started
                ] == []


async def test_samples_are_separate_records(tmp_path):
    always = EXIT_SCRIPTS["round-1"]  # every prediction and the fallback answer 5
    store = ResultStore(tmp_path, "toy", config(temperature=0.7))
    await run_eval(
        QUESTIONS[:2],
        store=store,
        context=SiftContext(model=ScriptedChatModel(script=always), temperature=0.7),
        samples=3,
        progress=None,
    )
    keys = sorted((r["id"], r["sample"]) for r in store.records())
    assert keys == [("q1", 0), ("q1", 1), ("q1", 2), ("q2", 0), ("q2", 1), ("q2", 2)]
    assert summarize(store.records())["majority"]["questions"] == 2


def test_a_torn_last_line_is_skipped_and_sealed(tmp_path):
    store = ResultStore(tmp_path, "toy", config())
    good = {"id": "a", "sample": 0, "question_sha": "s", "status": "error", "error": "x"}
    store.path.write_text(json.dumps(good) + "\n" + '{"id": "b", "sam', encoding="utf-8")
    assert read_records(store.path) == ([good], 1)
    with store:
        store.append({**good, "id": "c"})
    records, torn = read_records(store.path)
    assert [r["id"] for r in records] == ["a", "c"] and torn == 1


async def test_a_failed_cot_is_the_records_error_and_sift_never_starts(tmp_path):
    # No reply for "direct": the CoT call fails, so there is no fallback for SIFT to reuse.
    model = ScriptedChatModel(
        script={"sticker": STICKER, "predict_sticker": boxed("5"), "predict_query_sticker": boxed("5")}
    )
    store = ResultStore(tmp_path, "toy", config())
    outcome = await run_eval(QUESTIONS[:1], store=store, context=SiftContext(model=model), progress=None)
    assert outcome.errors == 1 and "no reply scripted for role 'direct'" in outcome.first_error
    assert [record["status"] for record in store.records()] == ["error"]
    assert model.calls == []  # the failed CoT call raised before it started; SIFT made none


def test_the_server_runs_journal_keeps_the_last_thread_of_each_run_and_skips_a_torn_line(tmp_path):
    from sift_graph.evaluation.server import ThreadJournal

    path = tmp_path / "set.threads"
    key = ("q1", 0, "sha")
    journal = ThreadJournal(path)
    first = journal.new_thread(key, "cot")
    retried = journal.new_thread(key, "cot")
    sift = journal.new_thread(key, "sift")
    with open(path, "a", encoding="utf-8") as torn:
        torn.write('{"key": ["q2", 0, "sha"], "method": "co')  # a crash mid-line: never created
    reread = ThreadJournal(path)
    assert first != retried
    assert (reread.thread(key, "cot"), reread.thread(key, "sift")) == (retried, sift)
    assert reread.thread(("q2", 0, "sha"), "cot") is None
    after_crash = reread.new_thread(("q3", 0, "sha"), "cot")  # appended on a line of its own
    assert ThreadJournal(path).thread(("q3", 0, "sha"), "cot") == after_crash


def test_a_server_eval_sends_and_digests_run_settings_only():
    from sift_graph.evaluation.server import ServerTarget, server_config

    context = SiftContext(model="openai:x", base_url="http://example.invalid/v1", api_key="sk-x", max_tokens=64)
    target = ServerTarget("http://127.0.0.1:2024", "a-id", "c-id", "sift on http://127.0.0.1:2024")
    settings = server_config(context, target).settings
    assert settings["model"] == target.label and settings["max_tokens"] == 64
    assert not {"base_url", "api_key", "cache", "dtype", "request_timeout"} & settings.keys()
