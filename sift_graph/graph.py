"""SIFT as a LangGraph `StateGraph`.

    START -> generate_sticker -> predict_sticker ------+-> check_consensus -> END (agreed)
                             \\-> predict_query_sticker -/        |
           forward_optimize <-------------------------------------+ (forward rounds left)
           inverse_generate -> forward_optimize <-----------------+ (inverse rounds left)
           direct_answer -> END <---------------------------------+ (budget spent)

The two predictions are one superstep apart from nothing else, so they run concurrently
(threads under `invoke`, tasks under `ainvoke`), and `check_consensus` waits for both.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy

from sift_graph.context import SiftContext
from sift_graph.faults import is_transient_fault
from sift_graph.nodes import STEPS, InlineStep, ModelNode, check_consensus, context_of
from sift_graph.state import RoundRecord, SiftInput, SiftOutput, SiftState

NextStep = Literal["forward_optimize", "inverse_generate", "direct_answer", "__end__"]

# The one retry layer for model calls (clients are built with their own retries off):
# transient faults back off and retry; bad input and programming errors fail at once.
MODEL_RETRY = RetryPolicy(
    max_attempts=4, initial_interval=0.5, backoff_factor=2.0, max_interval=10.0, retry_on=is_transient_fault
)


def next_step(rounds: list[RoundRecord], forward_rounds: int, inverse_rounds: int) -> NextStep:
    """Where SIFT goes after a round: stop on agreement, else spend the round budget
    (forward rounds first, then inverse ones), else fall back to a direct solve."""
    if rounds and rounds[-1]["agreed"]:
        return END
    done = len(rounds)
    if done < 1 + forward_rounds:
        return "forward_optimize"
    if done < 1 + forward_rounds + inverse_rounds:
        return "inverse_generate"
    return "direct_answer"


def route_after_consensus(state: SiftState, runtime: Runtime[SiftContext]) -> NextStep:
    context = context_of(runtime)
    return next_step(state["rounds"], context.forward_rounds, context.inverse_rounds)


def build_sift_graph(*, retry_policy: RetryPolicy | None = MODEL_RETRY) -> StateGraph:
    """The SIFT graph, uncompiled: the caller chooses the checkpointer.

    Input `{"question": str}`; output `SiftOutput`; run settings in `SiftContext`.
    `retry_policy` applies to every model node (None: no retries).
    """
    builder = StateGraph(
        SiftState, context_schema=SiftContext, input_schema=SiftInput, output_schema=SiftOutput
    )
    for name, step in STEPS.items():
        builder.add_node(name, ModelNode(name, step), retry_policy=retry_policy)
    builder.add_node("check_consensus", InlineStep("check_consensus", check_consensus))
    add_sift_edges(builder)
    return builder


def add_sift_edges(builder: StateGraph) -> None:
    """SIFT's loop, on a builder that has its nodes (the benchmark's LangGraph-floor graph
    wires stand-in nodes with this same function)."""
    builder.add_edge(START, "generate_sticker")
    for produces_sticker in ("generate_sticker", "forward_optimize"):
        builder.add_edge(produces_sticker, "predict_sticker")
        builder.add_edge(produces_sticker, "predict_query_sticker")
    builder.add_edge(["predict_sticker", "predict_query_sticker"], "check_consensus")
    builder.add_conditional_edges(
        "check_consensus",
        InlineStep("route_after_consensus", route_after_consensus),
        ["forward_optimize", "inverse_generate", "direct_answer", END],
    )
    builder.add_edge("inverse_generate", "forward_optimize")
    builder.add_edge("direct_answer", END)
