"""The graph's nodes: runnables that run SIFT's steps (`steps`) inside LangGraph.

A model node makes one call with both a sync and an async path, so `invoke` and
`ainvoke` both work and the async path never parks a call in a thread pool (a remote
model gets truly concurrent requests). Every node streams its step's stage event
(`stream_mode="custom"`, see `events`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.runtime import Runtime, get_runtime
from langgraph.types import Command

from sift_graph.cache import RUN_CACHES, RunCache, call_store
from sift_graph.calls import ModelReply, acall_model, call_model
from sift_graph.context import SiftContext, context_of
from sift_graph.models.specs import aresolve_model, resolve_model
from sift_graph.state import Role, RoleUsage, SiftState, role_usage
from sift_graph.steps import ModelStep, NextStep, consensus_update, current_round

# Only what is defined here: the steps, the context and question validation are public
# from their own modules (steps, context, state).
__all__ = ["InlineStep", "ModelNode", "call_cache", "check_consensus", "usage_update"]

ContextResolver = Callable[[Runtime[Any]], SiftContext]
"""How a node reads its run's SiftContext: `context_of` in the library, a deployment's
`Deployment.context_of` in a served graph."""


def usage_update(role: Role, reply: ModelReply) -> dict[str, dict[str, RoleUsage]]:
    """The reply's counters: a call made again within the run is free; one found in the
    call cache counts at its original cost (what the run costs), with no request made."""
    if reply.cache == "run":
        return {"usage": {role: role_usage(reused_calls=1)}}
    counts = role_usage(calls=1, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)
    if reply.cache == "store":
        counts["stored_calls"] = 1
    if reply.continued_from is not None:  # picked up where an interrupt had left it
        counts["continued_calls"], counts["continued_tokens"] = 1, reply.continued_from
    return {"usage": {role: counts}}


def call_cache(state: SiftState, context: SiftContext) -> BaseCache | None:
    """This call's view of the call cache (`cache`): the run's own calls, then the store."""
    if context.cache == "off":
        return None
    store = call_store(context.cache)
    token = state.get("run_token")
    return RUN_CACHES.for_run(token, store) if token else RunCache(store)


class ModelNode(Runnable[SiftState, dict[str, Any]]):
    """A graph node that makes one model call, with both a sync and an async path."""

    def __init__(self, name: str, step: ModelStep, resolve_context: ContextResolver = context_of) -> None:
        self.name = name
        self.step = step
        self.resolve_context = resolve_context

    def _finish(
        self, state: SiftState, reply: ModelReply, context: SiftContext, runtime: Runtime[Any]
    ) -> dict[str, Any]:
        update, event = self.step.update(state, reply, context)
        runtime.stream_writer(event)
        if "run_token" not in state:  # the run's first call names its layer of the call cache
            update["run_token"] = uuid.uuid4().hex
        return {**update, **usage_update(self.step.role, reply)}

    def invoke(self, input: SiftState, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        state, runtime = input, get_runtime()
        context = self.resolve_context(runtime)
        reply = self.step.reuse(state)
        if reply is None:
            model = resolve_model(context.model, context.connection, context.load_options)
            cache = call_cache(state, context)
            prompt, number = self.step.prompt(state), current_round(state)
            reply = call_model(model, self.step.role, prompt, context, config, cache, number)
        return self._finish(state, reply, context, runtime)

    async def ainvoke(self, input: SiftState, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        state, runtime = input, get_runtime()
        context = self.resolve_context(runtime)
        reply = self.step.reuse(state)
        if reply is None:
            model = await aresolve_model(context.model, context.connection, context.load_options)
            # A file store opens (mkdir, connect) in a worker thread, off the event loop.
            opens_a_file = isinstance(context.cache, str) and context.cache not in ("run", "off")
            cache = await asyncio.to_thread(call_cache, state, context) if opens_a_file else call_cache(state, context)
            prompt, number = self.step.prompt(state), current_round(state)
            reply = await acall_model(model, self.step.role, prompt, context, config, cache, number)
        return self._finish(state, reply, context, runtime)


class InlineStep(Runnable[SiftState, Any]):
    """A quick sync node `func(state, runtime)` (no I/O) that runs inline on both paths.

    LangGraph runs a plain sync function under `ainvoke` in a thread pool; for a step
    that takes microseconds, the hand-off to a worker thread and back costs more than
    the step itself (check_consensus runs once per round).
    """

    def __init__(self, name: str, func: Callable[[SiftState, Runtime[Any]], Any]) -> None:
        self.name = name
        self.func = func

    def invoke(self, input: SiftState, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.func(input, get_runtime())

    async def ainvoke(self, input: SiftState, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.func(input, get_runtime())


def check_consensus(
    state: SiftState, runtime: Runtime[Any], resolve_context: ContextResolver = context_of
) -> Command[NextStep]:
    """Record the round and go on: to the end on agreement (answering with the
    query+sticker prediction), else to the next round or the fallback.

    The node routes itself (a `Command`) rather than through a conditional edge: the
    decision needs the round just recorded, and a separate router would be one more
    runnable per round, which LangGraph runs in a worker thread under `ainvoke`."""
    update, event, goto = consensus_update(state, resolve_context(runtime))
    runtime.stream_writer(event)
    return Command(update=update, goto=goto)
