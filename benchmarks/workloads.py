"""What the benchmarks run: scripted replies per SIFT role, and the cascade as plain Python.

Two workloads:

- ``agree``: the two predictions agree in round 1 (3 model calls, critical path 2 calls);
- ``cascade``: they never agree, so SIFT spends its whole budget (sticker, 3 rounds of two
  predictions, forward, inverse + forward, direct: 11 calls, critical path 8 calls).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sift_graph import prompts
from sift_graph.calls import acall_model, call_model
from sift_graph.context import SiftContext
from sift_graph.steps import prediction_from, predictions_agree, sticker_from
from sift_graph.testing import EXIT_SCRIPTS

WORKLOAD_SCRIPTS = {"agree": EXIT_SCRIPTS["round-1"], "cascade": EXIT_SCRIPTS["fallback"]}


def script(workload: str) -> dict[str, Any]:
    """Replies per role for a ScriptedChatModel (lists are used in order)."""
    if workload not in WORKLOAD_SCRIPTS:
        raise ValueError(f"unknown workload {workload!r}")
    return WORKLOAD_SCRIPTS[workload]


# Calls per question, and calls on the critical path (the two predictions overlap).
CALLS = {"agree": 3, "cascade": 11}
CRITICAL_CALLS = {"agree": 2, "cascade": 8}


# One long-lived worker, as a hand-written program would keep one.
_PREDICTION_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plain-sift")


def plain_sift(model: Any, question: str, context: SiftContext) -> dict[str, Any]:
    """The SIFT cascade as a plain function: the same prompts, calls and checks as the
    graph, no orchestration (the baseline of the overhead benchmark)."""
    sticker = sticker_from(call_model(model, "sticker", prompts.sticker_prompt(question), context, None))
    last_by_query = None
    total_rounds = 1 + context.forward_rounds + context.inverse_rounds
    for number in range(1, total_rounds + 1):
        if number > 1:
            source = sticker
            if number > 1 + context.forward_rounds:  # inverse round: rebuild the sticker first
                solution = last_by_query["text"] or last_by_query["reasoning"] or ""
                source = sticker_from(call_model(model, "inverse", prompts.inverse_prompt(solution), context, None))
            sticker = sticker_from(
                call_model(model, "forward", prompts.forward_prompt(question, source["text"]), context, None)
            )
        # The two predictions run concurrently, as SIFT has them (and the graph runs them):
        # one on a worker thread, one here.
        on_worker = _PREDICTION_WORKER.submit(
            call_model, model, "predict_sticker", prompts.predict_sticker_prompt(sticker["text"]), context, None
        )
        last_by_query = prediction_from(
            call_model(
                model,
                "predict_query_sticker",
                prompts.predict_query_sticker_prompt(question, sticker["text"]),
                context,
                None,
            )
        )
        by_sticker = prediction_from(on_worker.result())
        if predictions_agree(by_sticker, last_by_query, context.comparator):
            return {"answer": last_by_query["answer"], "consensus_round": number}
    direct = prediction_from(call_model(model, "direct", prompts.direct_prompt(question), context, None))
    return {"answer": direct["answer"], "consensus_round": None}


async def aplain_sift(model: Any, question: str, context: SiftContext) -> dict[str, Any]:
    """`plain_sift` on the async path, the two predictions gathered concurrently."""
    sticker = sticker_from(await acall_model(model, "sticker", prompts.sticker_prompt(question), context, None))
    last_by_query = None
    total_rounds = 1 + context.forward_rounds + context.inverse_rounds
    for number in range(1, total_rounds + 1):
        if number > 1:
            source = sticker
            if number > 1 + context.forward_rounds:
                solution = last_by_query["text"] or last_by_query["reasoning"] or ""
                source = sticker_from(
                    await acall_model(model, "inverse", prompts.inverse_prompt(solution), context, None)
                )
            sticker = sticker_from(
                await acall_model(model, "forward", prompts.forward_prompt(question, source["text"]), context, None)
            )
        replies = await asyncio.gather(
            acall_model(model, "predict_sticker", prompts.predict_sticker_prompt(sticker["text"]), context, None),
            acall_model(
                model,
                "predict_query_sticker",
                prompts.predict_query_sticker_prompt(question, sticker["text"]),
                context,
                None,
            ),
        )
        by_sticker, last_by_query = (prediction_from(reply) for reply in replies)
        if predictions_agree(by_sticker, last_by_query, context.comparator):
            return {"answer": last_by_query["answer"], "consensus_round": number}
    direct = prediction_from(await acall_model(model, "direct", prompts.direct_prompt(question), context, None))
    return {"answer": direct["answer"], "consensus_round": None}
