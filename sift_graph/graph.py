"""SIFT as a LangGraph `StateGraph`.

    START -> generate_sticker -> predict_sticker ------+-> check_consensus -> END (agreed)
                             \\-> predict_query_sticker -/        |
           forward_optimize <-------------------------------------+ (forward rounds left)
           inverse_generate -> forward_optimize <-----------------+ (inverse rounds left)
           direct_answer -> END <---------------------------------+ (budget spent)
                                  END <---------------------------------+ (budget spent,
                                                                           fallback_answer="query_sticker")

The two predictions are one superstep apart from nothing else, so they run concurrently
(threads under `invoke`, tasks under `ainvoke`), and `check_consensus` waits for both.
"""

from __future__ import annotations

import functools
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from sift_graph.context import SiftContext, context_of
from sift_graph.deployment import Deployment
from sift_graph.faults import is_transient_fault
from sift_graph.nodes import ContextResolver, InlineStep, ModelNode, check_consensus
from sift_graph.state import SiftInput, SiftOutput, SiftState
from sift_graph.steps import STEPS, NextStep, next_step

__all__ = ["AFTER_CONSENSUS", "MODEL_RETRY", "NextStep", "SiftGraph", "add_sift_edges", "build_sift_graph", "next_step"]

# The one retry layer for model calls (clients are built with their own retries off):
# transient faults back off and retry; bad input and programming errors fail at once.
MODEL_RETRY = RetryPolicy(
    max_attempts=4, initial_interval=0.5, backoff_factor=2.0, max_interval=10.0, retry_on=is_transient_fault
)

AFTER_CONSENSUS: tuple[str, ...] = ("forward_optimize", "inverse_generate", "direct_answer", END)
"""Where `check_consensus` may send a run (`steps.next_step` decides)."""

SiftGraph = StateGraph[SiftState, SiftContext, SiftInput, SiftOutput]
"""The uncompiled SIFT graph's type."""


def build_sift_graph(
    *, retry_policy: RetryPolicy | None = MODEL_RETRY, deployment: Deployment | None = None
) -> SiftGraph:
    """The SIFT graph, uncompiled: the caller chooses the checkpointer.

    Input `{"question": str}`; output `SiftOutput`; run settings in `SiftContext`.
    `retry_policy` applies to every model node (None: no retries).
    With a `deployment` it is a served graph: its context takes the run settings only
    (`deployment.context_schema`), the rest is the deployment's (see `sift_graph.deployment`).
    """
    schema, resolve = context_handling(deployment)
    builder = StateGraph(SiftState, context_schema=schema, input_schema=SiftInput, output_schema=SiftOutput)
    node = functools.partial(model_node, resolve_context=resolve)
    # SG: the question's facts and its one-line question, as a Sticker.
    builder.add_node("generate_sticker", node("generate_sticker"), retry_policy=retry_policy)
    # CP: solve from the Sticker alone ...
    builder.add_node("predict_sticker", node("predict_sticker"), retry_policy=retry_policy)
    # ... and, concurrently, from the query followed by the Sticker.
    builder.add_node("predict_query_sticker", node("predict_query_sticker"), retry_policy=retry_policy)
    # Do the two answers agree? Records the round, then ends the run or starts the next.
    builder.add_node(
        "check_consensus",
        InlineStep("check_consensus", functools.partial(check_consensus, resolve_context=resolve)),
        destinations=AFTER_CONSENSUS,
    )
    # FO: correct the Sticker against the query (also finishes an inverse round).
    builder.add_node("forward_optimize", node("forward_optimize"), retry_policy=retry_policy)
    # IG: rebuild a Sticker from the last query+Sticker solution, without the query.
    builder.add_node("inverse_generate", node("inverse_generate"), retry_policy=retry_policy)
    # Fallback: a plain chain-of-thought answer when no round agreed.
    builder.add_node("direct_answer", node("direct_answer"), retry_policy=retry_policy)
    add_sift_edges(builder)
    return builder


def context_handling(deployment: Deployment | None) -> tuple[type[Any], ContextResolver]:
    """A graph's context schema and how its nodes read it: SiftContext in the library; in a
    served graph (a `deployment`) the run settings only, the rest the deployment's."""
    if deployment is None:
        return SiftContext, context_of
    return deployment.context_schema, deployment.context_of


def model_node(name: str, resolve_context: ContextResolver = context_of) -> ModelNode:
    return ModelNode(name, STEPS[name], resolve_context)


def add_sift_edges(builder: StateGraph[Any, Any, Any, Any]) -> None:
    """SIFT's fixed edges, on a builder that has its nodes (the benchmark's
    LangGraph-floor graph wires stand-in nodes with this same function).
    `check_consensus` routes itself to one of AFTER_CONSENSUS."""
    builder.add_edge(START, "generate_sticker")
    for produces_sticker in ("generate_sticker", "forward_optimize"):
        builder.add_edge(produces_sticker, "predict_sticker")
        builder.add_edge(produces_sticker, "predict_query_sticker")
    builder.add_edge(["predict_sticker", "predict_query_sticker"], "check_consensus")
    builder.add_edge("inverse_generate", "forward_optimize")
    builder.add_edge("direct_answer", END)
