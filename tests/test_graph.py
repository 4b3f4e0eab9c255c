"""The SIFT graph end to end with a scripted model: exit paths, budgets, concurrency,
accounting, records and events."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from sift_graph import SiftContext, build_sift_graph
from sift_graph.graph import next_step
from sift_graph.state import ROLES, role_of_tags
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

EXIT_PATHS = [
    # sticker-only answers, query+sticker answers, consensus round, calls per role
    pytest.param(["4"], ["4"], 1, {"sticker": 1, "predict_sticker": 1, "predict_query_sticker": 1}, id="round-1"),
    pytest.param(
        ["4", "5"],
        ["3", "5"],
        2,
        {"sticker": 1, "predict_sticker": 2, "predict_query_sticker": 2, "forward": 1},
        id="round-2",
    ),
    pytest.param(
        ["4", "5", "6"],
        ["3", "4", "6"],
        3,
        {"sticker": 1, "predict_sticker": 3, "predict_query_sticker": 3, "forward": 2, "inverse": 1},
        id="round-3",
    ),
    pytest.param(
        ["1", "2", "3"],
        ["4", "5", "6"],
        None,
        {"sticker": 1, "predict_sticker": 3, "predict_query_sticker": 3, "forward": 2, "inverse": 1, "direct": 1},
        id="fallback",
    ),
]


@pytest.mark.parametrize(("sticker_answers", "query_answers", "consensus_round", "calls"), EXIT_PATHS)
def test_exit_paths_make_exactly_the_paper_calls(
    graph, scripted, sticker_answers, query_answers, consensus_round, calls
):
    model = scripted(sticker_answers, query_answers, direct="9")
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model))

    assert model.call_counts() == calls
    assert sum(calls.values()) in (3, 6, 10, 11)
    assert result["consensus_round"] == consensus_round
    assert len(result["rounds"]) == (consensus_round or 3)
    assert [r["agreed"] for r in result["rounds"]] == [False] * (len(result["rounds"]) - 1) + [
        consensus_round is not None
    ]
    assert {role: u["calls"] for role, u in result["usage"].items()} == calls
    if consensus_round is None:
        assert result["answer"] == "9" and result["response"] == boxed("9")
    else:
        assert result["answer"] == query_answers[consensus_round - 1]


@pytest.mark.parametrize(("sticker_answers", "query_answers", "consensus_round", "calls"), EXIT_PATHS)
async def test_async_exit_paths_match_sync(scripted, sticker_answers, query_answers, consensus_round, calls):
    model = scripted(sticker_answers, query_answers, direct="9")
    result = await build_sift_graph().compile().ainvoke({"question": QUESTION}, context=SiftContext(model=model))
    assert model.call_counts() == calls
    assert result["consensus_round"] == consensus_round


def test_rounds_record_each_kind_of_sticker(graph, scripted):
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=scripted(["1", "2", "3"], ["4", "5", "6"])))
    rounds = result["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert [r["kind"] for r in rounds] == ["sticker", "forward", "inverse"]
    assert [r["sticker"]["text"] for r in rounds] == [STICKER, FORWARD_STICKER, REFINED_STICKER]
    assert [(r["predict_sticker"]["answer"], r["predict_query_sticker"]["answer"]) for r in rounds] == [
        ("1", "4"),
        ("2", "5"),
        ("3", "6"),
    ]
    assert result["sticker"]["text"] == REFINED_STICKER
    # an inverse round keeps the draft inverse generation made, before forward optimization
    assert [r["draft"] and r["draft"]["text"] for r in rounds] == [None, None, INVERSE_STICKER]


def test_prompts_carry_what_the_spec_says(graph, scripted):
    model = scripted(["1", "2", "3"], ["4", "5", "6"])
    graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    by_role: dict[str, list[str]] = {}
    for call in model.calls:
        by_role.setdefault(call.role, []).append(call.prompt)

    assert QUESTION in by_role["sticker"][0]
    # sticker-only predictions never see the query; query+sticker ones see both
    assert all(QUESTION not in prompt for prompt in by_role["predict_sticker"])
    assert all(QUESTION in prompt for prompt in by_role["predict_query_sticker"])
    assert STICKER in by_role["predict_sticker"][0] and FORWARD_STICKER in by_role["predict_sticker"][1]
    # inverse generation works from the last query+sticker prediction, without the query
    (inverse,) = by_role["inverse"]
    assert boxed("5") in inverse and QUESTION not in inverse
    # forward optimization checks against the query: first the SG sticker, then the IG draft
    first_forward, second_forward = by_role["forward"]
    assert QUESTION in first_forward and STICKER in first_forward
    assert QUESTION in second_forward and INVERSE_STICKER in second_forward
    assert QUESTION in by_role["direct"][0]
    assert all(
        "\\boxed{}" in p for role in ("predict_sticker", "predict_query_sticker", "direct") for p in by_role[role]
    )


def test_agreement_returns_the_query_sticker_prediction(graph):
    model = ScriptedChatModel(
        script={
            "sticker": STICKER,
            "predict_sticker": "From the facts: \\boxed{0.5}",
            "predict_query_sticker": "From the problem and facts: \\boxed{\\frac{1}{2}}",
        }
    )
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    assert result["consensus_round"] == 1
    assert result["answer"] == "\\frac{1}{2}"
    assert result["response"] == "From the problem and facts: \\boxed{\\frac{1}{2}}"


@pytest.mark.parametrize(
    ("forward_rounds", "inverse_rounds", "agree_in", "expected_calls"),
    [
        (3, 2, 5, {"sticker": 1, "predict_sticker": 5, "predict_query_sticker": 5, "forward": 4, "inverse": 1}),
        (
            3,
            2,
            None,
            {"sticker": 1, "predict_sticker": 6, "predict_query_sticker": 6, "forward": 5, "inverse": 2, "direct": 1},
        ),
        (0, 0, None, {"sticker": 1, "predict_sticker": 1, "predict_query_sticker": 1, "direct": 1}),
        (0, 2, 3, {"sticker": 1, "predict_sticker": 3, "predict_query_sticker": 3, "forward": 2, "inverse": 2}),
    ],
)
def test_larger_round_budgets_loop_until_consensus_or_budget(
    graph, scripted, forward_rounds, inverse_rounds, agree_in, expected_calls
):
    rounds = 1 + forward_rounds + inverse_rounds
    sticker_answers = [str(10 + k) for k in range(rounds)]
    query_answers = [str(20 + k) for k in range(rounds)]
    if agree_in:
        query_answers[agree_in - 1] = sticker_answers[agree_in - 1]
    model = scripted(sticker_answers, query_answers)
    context = SiftContext(model=model, forward_rounds=forward_rounds, inverse_rounds=inverse_rounds)
    result = graph.invoke({"question": QUESTION}, context=context, config={"recursion_limit": 100})
    assert model.call_counts() == expected_calls
    assert result["consensus_round"] == agree_in
    kinds = ["sticker"] + ["forward"] * forward_rounds + ["inverse"] * inverse_rounds
    assert [r["kind"] for r in result["rounds"]] == kinds[: agree_in or rounds]


def test_the_two_predictions_run_concurrently(graph, scripted):
    # Each prediction waits for the other at a barrier: run one after the other, the
    # first would time out there and the run would fail.
    barrier = threading.Barrier(2, timeout=10)

    def meet_the_other_prediction(role: str) -> None:
        if role.startswith("predict"):
            barrier.wait()

    model = scripted(["4", "5"], ["3", "5"], before_reply=meet_the_other_prediction)
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    assert result["consensus_round"] == 2
    assert model.max_in_flight == 2


class PredictionsMeet(ScriptedChatModel):
    """On the async path each prediction waits at `barrier` for the other: made one after
    the other, the first would time out there and the run would fail."""

    barrier: Any

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        if role_of_tags(list(run_manager.tags)).startswith("predict"):
            await asyncio.wait_for(self.barrier.wait(), timeout=10)
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


async def test_the_two_predictions_overlap_on_the_async_path():
    model = PredictionsMeet(script=script_for(["4"], ["4"]), barrier=asyncio.Barrier(2))
    result = await build_sift_graph().compile().ainvoke({"question": QUESTION}, context=SiftContext(model=model))
    assert result["consensus_round"] == 1
    assert model.call_counts() == {"sticker": 1, "predict_sticker": 1, "predict_query_sticker": 1}


def test_usage_sums_every_call_per_role(graph, scripted):
    model = scripted(["1", "2", "3"], ["4", "5", "6"])
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    expected: dict[str, dict[str, int]] = {}
    forwards = iter([FORWARD_STICKER, REFINED_STICKER])
    for call in model.calls:
        reply_words = {"sticker": STICKER, "inverse": INVERSE_STICKER}.get(call.role)
        reply_words = next(forwards) if call.role == "forward" else reply_words
        counts = expected.setdefault(call.role, {"calls": 0, "input_tokens": 0, "output_tokens": 0})
        counts["calls"] += 1
        counts["input_tokens"] += len(call.prompt.split())
        counts["output_tokens"] += len((reply_words or boxed("0")).split())
    assert result["usage"] == expected


def test_a_truncated_prediction_never_counts_as_agreement(graph):
    model = ScriptedChatModel(
        script={
            "sticker": STICKER,
            "forward": FORWARD_STICKER,  # a new sticker: round 2's calls are new calls
            "inverse": STICKER,
            "predict_sticker": boxed("5"),
            "predict_query_sticker": [{"text": boxed("5"), "finish_reason": "length"}, boxed("5")],
            "direct": boxed("5"),
        }
    )
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    first = result["rounds"][0]
    assert first["predict_query_sticker"]["truncated"] and not first["agreed"]
    assert result["consensus_round"] == 2


def test_a_malformed_sticker_is_recorded_and_announced(graph):
    model = ScriptedChatModel(
        script={
            "sticker": "I think the apples are five.",
            "predict_sticker": boxed("5"),
            "predict_query_sticker": boxed("5"),
        }
    )
    events = [
        chunk
        for mode, chunk in graph.stream(
            {"question": QUESTION}, context=SiftContext(model=model), stream_mode=["custom", "values"]
        )
        if mode == "custom"
    ]
    sticker_event = events[0]
    assert sticker_event["stage"] == "sticker" and sticker_event["well_formed"] is False
    assert sticker_event["problems"] == ["no **Conditions:** header"]
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=ScriptedChatModel(script=model.script)))
    assert result["rounds"][0]["sticker"]["well_formed"] is False


def test_stages_stream_as_custom_events_in_order(graph, scripted):
    model = scripted(["4", "5"], ["3", "5"])
    events = list(graph.stream({"question": QUESTION}, context=SiftContext(model=model), stream_mode="custom"))
    stages = [(e["stage"], e.get("round")) for e in events]
    assert stages[0] == ("sticker", 1)
    assert sorted(stages[1:3]) == [("prediction", 1), ("prediction", 1)]
    assert stages[3:] == [("consensus", 1), ("sticker", 2), ("prediction", 2), ("prediction", 2), ("consensus", 2)]
    assert events[3]["answers"] == ["4", "3"] and events[3]["agreed"] is False
    assert events[-1]["agreed"] is True


def test_every_call_is_tagged_with_exactly_one_role(graph, scripted):
    model = scripted(["1", "2", "3"], ["4", "5", "6"])
    graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    assert {call.role for call in model.calls} == set(ROLES)


def test_decoding_settings_reach_the_model(graph, scripted):
    model = scripted(["4"], ["4"])
    graph.invoke({"question": QUESTION}, context=SiftContext(model=model, max_tokens=77, temperature=0.6, top_p=0.9))
    assert {tuple(sorted(call.kwargs.items())) for call in model.calls} == {
        (("max_tokens", 77), ("temperature", 0.6), ("top_p", 0.9))
    }
    greedy = scripted(["4"], ["4"])
    graph.invoke({"question": QUESTION}, context=SiftContext(model=greedy, top_p=0.9))
    assert all(call.kwargs == {"max_tokens": 1024, "temperature": 0.0} for call in greedy.calls)


def test_a_transient_model_fault_is_retried(graph, scripted):
    model = scripted(["4"], ["4"], failures={"sticker": 1})
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    assert result["consensus_round"] == 1
    assert model.call_counts()["sticker"] == 1


def test_a_run_without_context_uses_defaults_for_everything_but_the_model(graph, monkeypatch, scripted):
    model = scripted(["4"], ["4"])
    monkeypatch.setattr(
        "sift_graph.nodes.resolve_model",
        lambda spec, connection=None, options=None: model if spec in (None, "default") else None,
    )
    result = graph.invoke({"question": QUESTION})
    assert result["consensus_round"] == 1
    assert model.calls[0].kwargs == {"max_tokens": 1024, "temperature": 0.0}


@pytest.mark.parametrize("question", ["", "   ", None, 42])
def test_a_bad_question_is_a_clear_error(graph, scripted, question):
    model = scripted(["4"], ["4"])
    with pytest.raises(ValueError, match=r"^question: expected a non-empty string"):
        graph.invoke({"question": question}, context=SiftContext(model=model))
    assert model.calls == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("forward_rounds", -1),
        ("inverse_rounds", 1.5),
        ("max_tokens", 0),
        ("temperature", -0.1),
        ("top_p", 0),
        ("comparator", "fuzzy"),
        ("model", 3),
        ("model", "gpt:x"),
        ("model", "hf:"),
        ("model", "hf:/no/such/model.gguf"),
    ],
)
def test_bad_context_fields_are_named(field, value):
    with pytest.raises(ValueError, match=f"^{field}: "):
        SiftContext(**{field: value})


@pytest.mark.parametrize(
    ("agreed", "done", "forward", "inverse", "expected"),
    [
        ([True], 1, 1, 1, "__end__"),
        ([False], 1, 1, 1, "forward_optimize"),
        ([False, False], 2, 1, 1, "inverse_generate"),
        ([False] * 3, 3, 1, 1, "direct_answer"),
        ([False], 1, 0, 1, "inverse_generate"),
        ([False], 1, 0, 0, "direct_answer"),
        ([False] * 3, 3, 3, 0, "forward_optimize"),
    ],
)
def test_next_step(agreed, done, forward, inverse, expected):
    rounds = [{"agreed": a} for a in agreed]
    assert next_step(rounds, forward, inverse) == expected


def test_a_sticker_cut_off_at_the_token_limit_is_malformed(graph):
    model = ScriptedChatModel(
        script={
            "sticker": {"text": STICKER, "finish_reason": "length"},
            "predict_sticker": boxed("5"),
            "predict_query_sticker": boxed("5"),
        }
    )
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model))
    assert result["sticker"]["well_formed"] is False
    assert result["sticker"]["problems"] == ["cut off at the token limit"]
