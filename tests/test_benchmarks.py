"""The benchmark machinery works and measures what it says (no timings asserted here:
`python -m benchmarks` measures)."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import memory, server, workloads
from benchmarks.serving import _context
from sift_graph import build_sift_graph
from sift_graph.context import SiftContext
from sift_graph.testing import QUESTION, ScriptedChatModel


@pytest.mark.parametrize("workload", ["agree", "cascade"])
def test_the_plain_baseline_is_the_same_cascade_as_the_graph(workload):
    by_graph = ScriptedChatModel(script=workloads.script(workload))
    result = build_sift_graph().compile().invoke({"question": QUESTION}, context=SiftContext(model=by_graph))
    by_plain = ScriptedChatModel(script=workloads.script(workload))
    plain = workloads.plain_sift(by_plain, QUESTION, SiftContext(model=by_plain))

    assert by_plain.call_counts() == by_graph.call_counts()
    assert sum(by_graph.call_counts().values()) == workloads.CALLS[workload]
    assert [call.prompt for call in by_plain.calls if call.role == "direct"] == [
        call.prompt for call in by_graph.calls if call.role == "direct"
    ]
    assert (plain["answer"], plain["consensus_round"]) == (result["answer"], result["consensus_round"])


async def test_the_async_baseline_makes_the_same_calls():
    model = ScriptedChatModel(script=workloads.script("cascade"), latency=0.001)
    plain = await workloads.aplain_sift(model, QUESTION, SiftContext(model=model))
    assert plain["consensus_round"] is None
    assert sum(model.call_counts().values()) == workloads.CALLS["cascade"]
    assert model.max_in_flight == 2  # the predictions overlap, as in the graph


@pytest.mark.parametrize("workload", ["agree", "cascade"])
def test_the_sleeping_server_drives_a_real_served_run(workload):
    with server.SleepingServer(0.001, workload) as sleeping:
        result = asyncio.run(build_sift_graph().compile().ainvoke({"question": QUESTION}, context=_context(sleeping)))
    assert sum(usage["calls"] for usage in result["usage"].values()) == workloads.CALLS[workload]
    assert result["answer"] == "5"
    assert result["consensus_round"] == (1 if workload == "agree" else None)


def test_role_of_prompt_recognises_every_prompt():
    from sift_graph import prompts

    assert prompts.role_of_prompt(prompts.sticker_prompt("q")) == "sticker"
    assert prompts.role_of_prompt(prompts.predict_sticker_prompt("s")) == "predict_sticker"
    assert prompts.role_of_prompt(prompts.predict_query_sticker_prompt("q", "s")) == "predict_query_sticker"
    assert prompts.role_of_prompt(prompts.forward_prompt("q", "s")) == "forward"
    assert prompts.role_of_prompt(prompts.inverse_prompt("x")) == "inverse"
    assert prompts.role_of_prompt(prompts.direct_prompt("q")) == "direct"


def test_deep_size_counts_nested_results():
    shared = "x" * 1000
    assert memory._deep_size({"a": [shared, shared]}) >= 1000
    assert memory._deep_size({"a": [shared, shared]}) < 2000  # one object counted once


def test_the_batch_timeline_averages_rows_per_step_in_equal_slices():
    from benchmarks.local import TIMELINE_SLICES, batch_timeline

    trace = [(0.5, 1), (1.5, 3), (1.6, 5), (9.5, 2), (20.0, 7)]  # the last step is outside the run
    mean, slices = batch_timeline(trace, start=0.0, end=10.0)
    assert mean == (1 + 3 + 5 + 2) / 4
    assert len(slices) == TIMELINE_SLICES and slices[0] == 1 and slices[1] == 4 and slices[9] == 2
    assert slices[2:9] == [0.0] * 7  # no step in those slices


def test_the_local_level_counts_what_the_questions_generated(tmp_path):
    from benchmarks.local import run_level
    from sift_graph.testing.tiny_llama import load_tiny_llama

    model = load_tiny_llama(tmp_path / "tiny")
    level = asyncio.run(run_level(model, [QUESTION, QUESTION + " Twice."], in_flight=2, max_tokens=6))
    assert level.questions == 2 and level.calls >= 6  # at least a round each: sticker and two predictions
    assert 0 < level.output_tokens <= 6 * level.calls
    assert level.rows_per_step >= 1 and max(level.timeline) > 1  # the two questions shared steps


async def test_the_resume_benchmark_counts_the_tokens_an_interrupt_costs(tmp_path):
    from benchmarks import resume

    with resume.StreamingServer() as server:
        restarted = await resume.interrupted_call(server, 0.5, "restart", tmp_path)
        continued = await resume.interrupted_call(server, 0.5, "prefill", tmp_path)
    assert restarted.after_interrupt == resume.CALL_TOKENS and restarted.again >= resume.CALL_TOKENS // 2
    assert continued.after_interrupt <= resume.CALL_TOKENS // 2 + resume.SAVE_EVERY_TOKENS + 2
    assert 0 <= continued.again <= resume.SAVE_EVERY_TOKENS + 2
