"""The graph's nodes.

A model node is three small pieces: a prompt built from state, one model call, and a
state update built from the reply. `ModelNode` runs them with a sync and an async call
path, so `invoke` and `ainvoke` both work and the async path never parks a call in a
thread pool (a remote model gets truly concurrent requests).

Each node also streams one custom event (`stream_mode="custom"`) describing its stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph._internal._constants import CONFIG_KEY_RUNTIME
from langgraph.runtime import Runtime, get_runtime

from sift_graph import prompts
from sift_graph.answers import answers_agree, extract_answer
from sift_graph.calls import ModelReply, acall_model, call_model
from sift_graph.context import SiftContext
from sift_graph.models import aresolve_model, resolve_model
from sift_graph.sticker import parse_sticker
from sift_graph.state import Prediction, Role, RoleUsage, RoundRecord, SiftState, Sticker

Event = dict[str, Any]
StepResult = tuple[dict[str, Any], Event]


def context_of(runtime: Runtime[Any]) -> SiftContext:
    """The run's SiftContext (a run without one gets the defaults)."""
    context = runtime.context
    if context is None:
        return SiftContext()
    if isinstance(context, dict):  # the LangGraph server hands context over as JSON
        return SiftContext(**context)
    return context


def validate_question(question: Any) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question: expected a non-empty string")
    return question.strip()


def current_round(state: SiftState) -> int:
    """1-based number of the round being prepared or predicted."""
    return len(state.get("rounds") or []) + 1


def usage_update(role: Role, reply: ModelReply) -> dict[str, dict[str, RoleUsage]]:
    return {
        "usage": {
            role: RoleUsage(calls=1, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)
        }
    }


def prediction_from(reply: ModelReply) -> Prediction:
    return Prediction(
        text=reply.text,
        answer=extract_answer(reply.text),
        reasoning=reply.reasoning,
        truncated=reply.truncated,
    )


def predictions_agree(first: Prediction, second: Prediction, comparator: str = "math") -> bool:
    """Consensus: both answers present, neither prediction cut off, answers equivalent."""
    if first["truncated"] or second["truncated"]:
        return False
    return answers_agree(first["answer"], second["answer"], comparator)  # type: ignore[arg-type]


def sticker_from(reply: ModelReply) -> Sticker:
    """Parse a sticker reply; one cut off at the token limit is malformed whatever it parses to."""
    sticker = parse_sticker(reply.text)
    if reply.truncated:
        sticker = Sticker(**{**sticker, "well_formed": False, "problems": [*sticker["problems"], "cut off at the token limit"]})
    return sticker


def sticker_event(round_number: int, kind: str, sticker: Sticker) -> Event:
    return {
        "stage": "sticker",
        "round": round_number,
        "kind": kind,
        "sticker": sticker["text"],
        "well_formed": sticker["well_formed"],
        "problems": sticker["problems"],
    }


# --- the model steps: prompt(state) and update(state, reply) ---------------------------


def sticker_prompt(state: SiftState) -> str:
    return prompts.sticker_prompt(validate_question(state.get("question")))


def sticker_update(state: SiftState, reply: ModelReply) -> StepResult:
    sticker = sticker_from(reply)
    return {"sticker": sticker, "round_kind": "sticker"}, sticker_event(1, "sticker", sticker)


def forward_prompt(state: SiftState) -> str:
    source = state.get("draft_sticker") or state["sticker"]
    return prompts.forward_prompt(state["question"], source["text"])


def forward_update(state: SiftState, reply: ModelReply) -> StepResult:
    sticker = sticker_from(reply)
    kind = "inverse" if state.get("draft_sticker") else "forward"
    update = {"sticker": sticker, "round_kind": kind, "draft_sticker": None}
    return update, sticker_event(current_round(state), kind, sticker)


def inverse_prompt(state: SiftState) -> str:
    last = state["rounds"][-1]["predict_query_sticker"]
    # The solution text is what a sticker can be rebuilt from; a reasoning model that
    # wrote no final text leaves only its reasoning to work from.
    return prompts.inverse_prompt(last["text"] or last["reasoning"] or "")


def inverse_update(state: SiftState, reply: ModelReply) -> StepResult:
    draft = sticker_from(reply)
    event = {"stage": "inverse", "round": current_round(state), "sticker": draft["text"],
             "well_formed": draft["well_formed"], "problems": draft["problems"]}
    return {"draft_sticker": draft}, event


def predict_sticker_prompt(state: SiftState) -> str:
    return prompts.predict_sticker_prompt(state["sticker"]["text"])


def predict_query_sticker_prompt(state: SiftState) -> str:
    return prompts.predict_query_sticker_prompt(state["question"], state["sticker"]["text"])


def _prediction_update(role: Role) -> Callable[[SiftState, ModelReply], StepResult]:
    def update(state: SiftState, reply: ModelReply) -> StepResult:
        prediction = prediction_from(reply)
        event = {"stage": "prediction", "round": current_round(state), "role": role,
                 "answer": prediction["answer"], "truncated": prediction["truncated"]}
        return {role: prediction}, event

    return update


def direct_prompt(state: SiftState) -> str:
    return prompts.direct_prompt(state["question"])


def direct_update(state: SiftState, reply: ModelReply) -> StepResult:
    prediction = prediction_from(reply)
    update = {"answer": prediction["answer"], "response": prediction["text"], "consensus_round": None}
    event = {"stage": "direct", "answer": prediction["answer"], "truncated": prediction["truncated"]}
    return update, event


@dataclass(frozen=True)
class ModelStep:
    role: Role
    prompt: Callable[[SiftState], str]
    update: Callable[[SiftState, ModelReply], StepResult]


STEPS: dict[str, ModelStep] = {
    "generate_sticker": ModelStep("sticker", sticker_prompt, sticker_update),
    "predict_sticker": ModelStep("predict_sticker", predict_sticker_prompt, _prediction_update("predict_sticker")),
    "predict_query_sticker": ModelStep(
        "predict_query_sticker", predict_query_sticker_prompt, _prediction_update("predict_query_sticker")
    ),
    "forward_optimize": ModelStep("forward", forward_prompt, forward_update),
    "inverse_generate": ModelStep("inverse", inverse_prompt, inverse_update),
    "direct_answer": ModelStep("direct", direct_prompt, direct_update),
}


class ModelNode(Runnable[SiftState, dict[str, Any]]):
    """A graph node that makes one model call, with both a sync and an async path."""

    def __init__(self, name: str, step: ModelStep) -> None:
        self.name = name
        self.step = step

    def _finish(self, state: SiftState, reply: ModelReply, runtime: Runtime[Any]) -> dict[str, Any]:
        update, event = self.step.update(state, reply)
        runtime.stream_writer(event)
        return {**update, **usage_update(self.step.role, reply)}

    def invoke(self, state: SiftState, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        runtime = get_runtime()
        context = context_of(runtime)
        prompt = self.step.prompt(state)
        reply = call_model(resolve_model(context.model, context.connection), self.step.role, prompt, context, config)
        return self._finish(state, reply, runtime)

    async def ainvoke(
        self, state: SiftState, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        runtime = get_runtime()
        context = context_of(runtime)
        prompt = self.step.prompt(state)
        model = await aresolve_model(context.model, context.connection)
        reply = await acall_model(model, self.step.role, prompt, context, config)
        return self._finish(state, reply, runtime)


class InlineStep(Runnable[SiftState, Any]):
    """A quick sync step `func(state, runtime)` (no I/O) that runs inline on both paths.

    LangGraph runs a plain sync function under `ainvoke` in a thread pool; for a step
    that takes microseconds, the hand-off to a worker thread and back costs more than
    the step itself (check_consensus and its router run once per round).
    """

    def __init__(self, name: str, func: Callable[[SiftState, Runtime[Any]], Any]) -> None:
        self.name = name
        self.func = func

    def invoke(self, state: SiftState, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.func(state, _runtime_of(config))

    async def ainvoke(self, state: SiftState, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.func(state, _runtime_of(config))


def _runtime_of(config: RunnableConfig | None) -> Runtime[Any]:
    """The run's Runtime from the config LangGraph passes in (a conditional edge is called
    with its config but outside a runnable context, where `get_runtime()` fails)."""
    runtime = ((config or {}).get("configurable") or {}).get(CONFIG_KEY_RUNTIME)
    return runtime if runtime is not None else get_runtime()


# --- the consensus check: no model call ---------------------------------------------------


def check_consensus(state: SiftState, runtime: Runtime[SiftContext]) -> dict[str, Any]:
    """Record the round; on agreement, answer with the query+sticker prediction."""
    context = context_of(runtime)
    number = current_round(state)
    by_sticker, by_query_sticker = state["predict_sticker"], state["predict_query_sticker"]
    agreed = predictions_agree(by_sticker, by_query_sticker, context.comparator)
    record = RoundRecord(
        round=number,
        kind=state.get("round_kind", "sticker"),
        sticker=state["sticker"],
        predict_sticker=by_sticker,
        predict_query_sticker=by_query_sticker,
        agreed=agreed,
    )
    runtime.stream_writer(
        {"stage": "consensus", "round": number, "agreed": agreed,
         "answers": [by_sticker["answer"], by_query_sticker["answer"]],
         "truncated": by_sticker["truncated"] or by_query_sticker["truncated"]}
    )
    update: dict[str, Any] = {"rounds": [record], "predict_sticker": None, "predict_query_sticker": None}
    if agreed:
        update.update(
            answer=by_query_sticker["answer"], response=by_query_sticker["text"], consensus_round=number
        )
    return update
