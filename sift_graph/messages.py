"""SIFT for chat-shaped graphs: reads the last human message, answers with an AI message.

    from sift_graph.messages import build_sift_messages_graph

    parent.add_node("sift", build_sift_messages_graph().compile())

The adapter's input and output are only `messages`, so a parent built on
`MessagesState` gets exactly one new AI message per question and none of SIFT's
working state. The SIFT graph runs inside it as a subgraph: its stages stream with
`stream(..., subgraphs=True)` and it checkpoints and resumes with the parent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

# LangGraph's own chat state (`messages` with the `add_messages` reducer), re-exported
# here because parents built on it have always imported it from this module.
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import RetryPolicy

from sift_graph.context import SiftContext
from sift_graph.deployment import Deployment
from sift_graph.graph import MODEL_RETRY, build_sift_graph
from sift_graph.state import RoleUsage, RoundRecord, Sticker, total_usage, validate_question

__all__ = [
    "MESSAGE_NAME",
    "MessagesState",
    "SiftMessagesState",
    "answer_message",
    "build_sift_messages_graph",
    "last_human_text",
]

# The name SIFT's AI messages carry, so a multi-agent transcript says who answered.
MESSAGE_NAME = "sift"


class SiftMessagesState(MessagesState, total=False):
    """The adapter's own working state. SIFT's results are plain last-value channels
    here (no reducers): each question replaces the last one's, so a chat thread that asks
    many questions never accumulates rounds across them."""

    question: str
    answer: str | None
    response: str | None
    consensus_round: int | None
    sticker: Sticker | None
    rounds: list[RoundRecord]
    usage: dict[str, RoleUsage]


def last_human_text(messages: Sequence[BaseMessage]) -> str:
    """The text of the last human message (LangChain's `message.text`: its text blocks,
    nothing else); ValueError naming `messages` if there is none."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    raise ValueError("messages: no human message to answer")


def answer_message(state: Mapping[str, Any]) -> AIMessage:
    """SIFT's result as one AI message: the chosen solution as content, the extracted
    answer and how it was reached in `response_metadata`."""
    return AIMessage(
        content=state.get("response") or "",
        name=MESSAGE_NAME,
        response_metadata={
            "sift_answer": state.get("answer"),
            "sift_consensus_round": state.get("consensus_round"),
            "sift_rounds": len(state.get("rounds") or []),
            "sift_calls": total_usage(state.get("usage"))["calls"],
        },
    )


def read_question(state: SiftMessagesState) -> dict[str, Any]:
    return {"question": validate_question(last_human_text(state["messages"]))}


def reply(state: SiftMessagesState) -> dict[str, Any]:
    return {"messages": [answer_message(state)]}


def build_sift_messages_graph(
    *, retry_policy: RetryPolicy | None = MODEL_RETRY, deployment: Deployment | None = None
) -> StateGraph[SiftMessagesState, Any, MessagesState, MessagesState]:
    """An uncompiled graph: `{"messages": [...]}` in, one AI message appended out.
    With a `deployment` it is served: run settings only in its context (as `build_sift_graph`)."""
    schema: type[Any] = SiftContext if deployment is None else deployment.context_schema
    builder = StateGraph(
        SiftMessagesState,
        context_schema=schema,
        input_schema=MessagesState,
        output_schema=MessagesState,
    )
    builder.add_node("read_question", read_question)
    builder.add_node("sift", build_sift_graph(retry_policy=retry_policy, deployment=deployment).compile(name="sift"))
    builder.add_node("reply", reply)
    builder.add_edge(START, "read_question")
    builder.add_edge("read_question", "sift")
    builder.add_edge("sift", "reply")
    return builder
