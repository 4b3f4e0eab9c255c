"""SIFT inside a parent graph: directly (the parent has `question`) and through the
messages adapter. State isolation, resume of the parent, and streamed subgraph events."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import RetryPolicy
from typing_extensions import TypedDict

import sift_graph.messages as adapter
from sift_graph import SiftContext, build_sift_graph
from sift_graph.checkpoints import RUN_DURABILITY, open_checkpointer
from sift_graph.messages import build_sift_messages_graph, last_human_text
from sift_graph.testing import QUESTION, ScriptedChatModel, script_for

from helpers import broken_model

ROUND_2 = script_for(["4", "5"], ["3", "5"])  # consensus in round 2
EVERY_STAGE = script_for(["1", "2", "3"], ["4", "5", "6"], direct="9")
NO_RETRY = RetryPolicy(max_attempts=1)


class HomeworkState(TypedDict, total=False):
    """A parent that shares some of SIFT's keys, with a reducer on `rounds`."""

    question: str
    answer: str | None
    rounds: Annotated[list, operator.add]
    log: Annotated[list[str], operator.add]


def build_homework_graph(retry_policy=None) -> StateGraph:
    builder = StateGraph(HomeworkState, context_schema=SiftContext)
    builder.add_node("prepare", lambda state: {"log": ["prepared"]})
    sift = build_sift_graph() if retry_policy is None else build_sift_graph(retry_policy=retry_policy)
    builder.add_node("sift", sift.compile(name="sift"))
    builder.add_node("finish", lambda state: {"log": [f"answered {state['answer']}"]})
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "sift")
    builder.add_edge("sift", "finish")
    builder.add_edge("finish", END)
    return builder


def thread() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def test_sift_as_a_node_keeps_the_parent_state_clean():
    model = ScriptedChatModel(script=ROUND_2)
    result = (
        build_homework_graph().compile().invoke({"question": QUESTION, "rounds": []}, context=SiftContext(model=model))
    )
    assert result["answer"] == "5"
    # Two SIFT rounds, each once: the parent's reducer saw SIFT's output a single time.
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    assert result["log"] == ["prepared", "answered 5"]
    # SIFT's working keys (drafts, pending predictions) never reach the parent.
    assert set(result) == {"question", "answer", "rounds", "log"}


def test_asking_twice_in_one_parent_thread_does_not_duplicate_rounds(tmp_path):
    with open_checkpointer(str(tmp_path / "runs.sqlite")) as saver:
        graph = build_homework_graph().compile(checkpointer=saver)
        config, context = thread(), SiftContext(model=ScriptedChatModel(script=script_for(["4"], ["4"])))
        graph.invoke({"question": QUESTION}, config, context=context)
        second = graph.invoke({"question": QUESTION}, config, context=context)
    assert [r["round"] for r in second["rounds"]] == [1, 1]  # one round per question, no copies


@pytest.mark.parametrize("broken_role", ["predict_query_sticker", "inverse"])
def test_parent_and_sift_resume_together(checkpoints, broken_role):
    with open_checkpointer(checkpoints) as saver:
        graph = build_homework_graph(retry_policy=NO_RETRY).compile(checkpointer=saver)
        clean_model = ScriptedChatModel(script=EVERY_STAGE)
        clean = graph.invoke({"question": QUESTION}, thread(), context=SiftContext(model=clean_model))

        config = thread()
        model = broken_model(broken_role, graph, config)
        context = SiftContext(model=model)
        with pytest.raises(ConnectionError):
            graph.invoke({"question": QUESTION}, config, context=context, durability=RUN_DURABILITY)
        resumed = graph.invoke(None, config, context=context, durability=RUN_DURABILITY)

    assert resumed == clean and resumed["log"] == ["prepared", "answered 9"]
    assert model.call_counts() == clean_model.call_counts()  # SIFT's finished calls were kept


def test_subgraph_stages_stream_inside_the_parent_run():
    graph = build_homework_graph().compile()
    context = SiftContext(model=ScriptedChatModel(script=ROUND_2))
    events = list(graph.stream({"question": QUESTION}, context=context, stream_mode="custom", subgraphs=True))

    namespaces = {namespace for namespace, _ in events}
    assert len(namespaces) == 1 and next(iter(namespaces))[0].startswith("sift:")
    stages = [(event.get("round"), event["stage"]) for _, event in events]
    assert stages[0] == (1, "sticker") and stages[-1] == (2, "consensus")
    assert stages.count((2, "prediction")) == 2


# --- the messages adapter ------------------------------------------------------------


def test_messages_adapter_answers_the_last_human_message_with_an_ai_message():
    model = ScriptedChatModel(script=ROUND_2)
    graph = build_sift_messages_graph().compile()
    history = [HumanMessage("hello"), AIMessage("hi"), HumanMessage(QUESTION)]
    result = graph.invoke({"messages": history}, context=SiftContext(model=model))

    assert set(result) == {"messages"}
    assert result["messages"][:3] == history
    answer = result["messages"][3]
    assert isinstance(answer, AIMessage) and answer.name == "sift"
    assert answer.content.endswith("\\boxed{5}")
    assert answer.response_metadata["sift_answer"] == "5"
    assert answer.response_metadata["sift_consensus_round"] == 2
    assert answer.response_metadata["sift_calls"] == 6
    assert QUESTION in model.calls[0].prompt and "hello" not in model.calls[0].prompt


def test_messages_adapter_reads_and_writes_langgraphs_own_messages_state():
    builder = build_sift_messages_graph()
    assert builder.input_schema is MessagesState and builder.output_schema is MessagesState
    assert adapter.MessagesState is MessagesState  # the import path parents have used keeps working


def test_messages_adapter_inside_a_messages_parent_resumes_and_streams(tmp_path):
    parent = StateGraph(MessagesState, context_schema=SiftContext)
    parent.add_node("sift", build_sift_messages_graph(retry_policy=NO_RETRY).compile())
    parent.add_edge(START, "sift")
    model = ScriptedChatModel(script=EVERY_STAGE, failures={"forward": 1})
    with open_checkpointer(str(tmp_path / "runs.sqlite")) as saver:
        graph = parent.compile(checkpointer=saver)
        config, context = thread(), SiftContext(model=model)
        with pytest.raises(ConnectionError):
            graph.invoke({"messages": [HumanMessage(QUESTION)]}, config, context=context, durability=RUN_DURABILITY)
        events = list(
            graph.stream(None, config, context=context, stream_mode="custom", subgraphs=True, durability=RUN_DURABILITY)
        )
        messages = graph.get_state(config).values["messages"]

    assert [m.type for m in messages] == ["human", "ai"]
    assert messages[1].response_metadata["sift_answer"] == "9"
    assert model.call_counts()["sticker"] == 1 and model.call_counts()["predict_sticker"] == 3
    # SIFT runs two levels down (parent > adapter > SIFT); the resumed run starts at round 2.
    assert all(len(namespace) == 2 for namespace, _ in events)
    assert events[0][1]["round"] == 2


def test_last_human_text_reads_content_blocks_and_rejects_no_question():
    blocks = HumanMessage(
        content=[{"type": "text", "text": "What is 2+2?"}, {"type": "image_url", "image_url": {"url": "x"}}]
    )
    assert last_human_text([blocks, AIMessage("4")]) == "What is 2+2?"
    with pytest.raises(ValueError, match=r"^messages: no human message"):
        last_human_text([AIMessage("hi")])
