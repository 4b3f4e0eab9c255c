"""SIFT's steps as small pure functions: what each one asks the model, and what it makes
of the reply.

A model step is a prompt built from the state and an update (state changes plus one
stage event) built from the reply; `nodes.ModelNode` runs it. `check_consensus` is the
one step without a model call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sift_graph import prompts
from sift_graph.answers import Comparator, answers_agree, extract_answer
from sift_graph.calls import ModelReply
from sift_graph.context import FallbackAnswer, SiftContext
from sift_graph.events import (
    PredictionRole,
    StageEvent,
    consensus_event,
    direct_event,
    inverse_event,
    prediction_event,
    sticker_event,
)
from sift_graph.state import (
    Prediction,
    Role,
    RoundKind,
    RoundRecord,
    SiftState,
    Sticker,
    usage_since,
    validate_question,
)
from sift_graph.sticker import parse_sticker, without_invented_conditions

StepResult = tuple[dict[str, Any], StageEvent]
Update = Callable[[SiftState, ModelReply, SiftContext], StepResult]
"""A model step's update: the state changes and the stage event of its reply (the run's
settings at hand, for the variants that change what a reply becomes)."""


def current_round(state: SiftState) -> int:
    """1-based number of the round being prepared or predicted."""
    return len(state.get("rounds") or []) + 1


def prediction_from(reply: ModelReply) -> Prediction:
    return Prediction(
        text=reply.text,
        answer=extract_answer(reply.text),
        reasoning=reply.reasoning,
        truncated=reply.truncated,
        cached=reply.cache is not None,
    )


def reply_of(prediction: Prediction) -> ModelReply:
    """A prediction made earlier, as the reply it came from (served with no request)."""
    return ModelReply(
        text=prediction["text"],
        reasoning=prediction["reasoning"],
        truncated=prediction["truncated"],
        input_tokens=0,
        output_tokens=0,
        cache="run",
    )


def predictions_agree(first: Prediction, second: Prediction, comparator: Comparator = "math") -> bool:
    """Consensus: both answers present, neither prediction cut off, answers equivalent."""
    if first["truncated"] or second["truncated"]:
        return False
    return answers_agree(first["answer"], second["answer"], comparator)


def sticker_from(reply: ModelReply) -> Sticker:
    """Parse a sticker reply; one cut off at the token limit is malformed whatever it parses to."""
    sticker = parse_sticker(reply.text)
    if reply.truncated:
        sticker = Sticker(
            **{**sticker, "well_formed": False, "problems": [*sticker["problems"], "cut off at the token limit"]}
        )
    return sticker


# --- the model steps: prompt(state) and update(state, reply) ---------------------------


def sticker_prompt(state: SiftState) -> str:
    return prompts.sticker_prompt(validate_question(state.get("question")))


def sticker_update(state: SiftState, reply: ModelReply, context: SiftContext) -> StepResult:
    sticker = sticker_from(reply)
    return {"sticker": sticker, "round_kind": "sticker"}, sticker_event(1, "sticker", sticker)


def forward_prompt(state: SiftState) -> str:
    source = state.get("draft_sticker") or state["sticker"]
    assert source is not None  # a forward round always follows a sticker
    return prompts.forward_prompt(state["question"], source["text"])


def forward_update(state: SiftState, reply: ModelReply, context: SiftContext) -> StepResult:
    sticker = sticker_from(reply)
    if context.sticker_check == "numbers":
        sticker = without_invented_conditions(sticker, state["question"])
    kind: RoundKind = "inverse" if state.get("draft_sticker") else "forward"
    update = {"sticker": sticker, "round_kind": kind}  # the draft stays until the round is recorded
    return update, sticker_event(current_round(state), kind, sticker)


def inverse_prompt(state: SiftState) -> str:
    last = state["rounds"][-1]["predict_query_sticker"]
    # The solution text is what a sticker can be rebuilt from; a reasoning model that
    # wrote no final text leaves only its reasoning to work from.
    return prompts.inverse_prompt(last["text"] or last["reasoning"] or "")


def inverse_update(state: SiftState, reply: ModelReply, context: SiftContext) -> StepResult:
    draft = sticker_from(reply)
    return {"draft_sticker": draft}, inverse_event(current_round(state), draft)


def predict_sticker_prompt(state: SiftState) -> str:
    return prompts.predict_sticker_prompt(_round_sticker(state)["text"])


def predict_query_sticker_prompt(state: SiftState) -> str:
    return prompts.predict_query_sticker_prompt(state["question"], _round_sticker(state)["text"])


def _round_sticker(state: SiftState) -> Sticker:
    sticker = state["sticker"]
    assert sticker is not None  # predictions always follow a sticker
    return sticker


def prediction_update(role: PredictionRole) -> Update:
    def update(state: SiftState, reply: ModelReply, context: SiftContext) -> StepResult:
        prediction = prediction_from(reply)
        event = prediction_event(
            current_round(state), role, prediction["answer"], prediction["truncated"], prediction["cached"]
        )
        return {role: prediction}, event

    return update


def direct_prompt(state: SiftState) -> str:
    return prompts.direct_prompt(state["question"])


def given_fallback(state: SiftState) -> ModelReply | None:
    """The direct solve given as input (an eval's CoT baseline), reused as the fallback."""
    given = state.get("fallback")
    return None if given is None else reply_of(given)


def direct_update(state: SiftState, reply: ModelReply, context: SiftContext) -> StepResult:
    prediction = prediction_from(reply)
    update = {"answer": prediction["answer"], "response": prediction["text"], "consensus_round": None}
    return {**update, "fallback": prediction}, direct_event(
        prediction["answer"], prediction["truncated"], prediction["cached"]
    )


def no_reply_to_reuse(state: SiftState) -> ModelReply | None:
    return None


@dataclass(frozen=True)
class ModelStep:
    role: Role
    prompt: Callable[[SiftState], str]
    update: Update
    reuse: Callable[[SiftState], ModelReply | None] = no_reply_to_reuse
    """A reply this step already has, so it makes no call (the fallback given as input)."""


STEPS: dict[str, ModelStep] = {
    "generate_sticker": ModelStep("sticker", sticker_prompt, sticker_update),
    "predict_sticker": ModelStep("predict_sticker", predict_sticker_prompt, prediction_update("predict_sticker")),
    "predict_query_sticker": ModelStep(
        "predict_query_sticker", predict_query_sticker_prompt, prediction_update("predict_query_sticker")
    ),
    "forward_optimize": ModelStep("forward", forward_prompt, forward_update),
    "inverse_generate": ModelStep("inverse", inverse_prompt, inverse_update),
    "direct_answer": ModelStep("direct", direct_prompt, direct_update, given_fallback),
}
"""The model steps by graph node name."""


# --- the consensus check and where SIFT goes next: no model call ------------------------

NextStep = Literal["forward_optimize", "inverse_generate", "direct_answer", "__end__"]


def next_step(
    rounds: list[RoundRecord], forward_rounds: int, inverse_rounds: int, fallback_answer: FallbackAnswer = "cot"
) -> NextStep:
    """Where SIFT goes after a round: stop on agreement, else spend the round budget
    (forward rounds first, then inverse ones), else fall back: to a direct solve, or
    (`fallback_answer="query_sticker"`) to the end, answering with the last round's
    query+sticker prediction."""
    if rounds and rounds[-1]["agreed"]:
        return "__end__"  # langgraph.graph.END
    done = len(rounds)
    if done < 1 + forward_rounds:
        return "forward_optimize"
    if done < 1 + forward_rounds + inverse_rounds:
        return "inverse_generate"
    return "__end__" if fallback_answer == "query_sticker" else "direct_answer"


def consensus_update(state: SiftState, context: SiftContext) -> tuple[dict[str, Any], StageEvent, NextStep]:
    """Record the round (with the calls it made); on agreement, answer with the
    query+sticker prediction, as also when the budget is spent and the fallback is that
    prediction (then with no consensus round). Also says where the run goes next."""
    number = current_round(state)
    by_sticker, by_query_sticker = state["predict_sticker"], state["predict_query_sticker"]
    assert by_sticker is not None and by_query_sticker is not None  # the join waits for both
    agreed = predictions_agree(by_sticker, by_query_sticker, context.comparator)
    earlier = state.get("rounds") or []
    record = RoundRecord(
        round=number,
        kind=state.get("round_kind", "sticker"),
        sticker=_round_sticker(state),
        predict_sticker=by_sticker,
        predict_query_sticker=by_query_sticker,
        agreed=agreed,
        usage=usage_since(state.get("usage") or {}, [done["usage"] for done in earlier]),
        draft=state.get("draft_sticker"),
    )
    event = consensus_event(
        number,
        agreed,
        [by_sticker["answer"], by_query_sticker["answer"]],
        by_sticker["truncated"] or by_query_sticker["truncated"],
    )
    update: dict[str, Any] = {
        "rounds": [record],
        "predict_sticker": None,
        "predict_query_sticker": None,
        "draft_sticker": None,
    }
    goto = next_step([*earlier, record], *context.round_budget, context.fallback_answer)
    if goto == "__end__":
        consensus_round = number if agreed else None
        update.update(
            answer=by_query_sticker["answer"], response=by_query_sticker["text"], consensus_round=consensus_round
        )
    return update, event, goto
