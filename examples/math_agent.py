"""A parent agent that sends math questions to SIFT and answers everything else directly.

    .venv/bin/python examples/math_agent.py                      # embedded model, two questions
    .venv/bin/python examples/math_agent.py --model openai:qwen2.5-7b-instruct --base-url http://localhost:8000/v1
    .venv/bin/python examples/math_agent.py --sift-url http://127.0.0.1:8000/v1   # SIFT behind `sift serve`

The agent is a `MessagesState` graph. A router reads the last human message; math goes to
SIFT through the messages adapter (a subgraph: its stages stream inside the agent's run),
anything else to one plain model call. Parent and SIFT checkpoint together in one SQLite
file, so a conversation continues across runs of this script under the same thread.

With `--sift-url`, SIFT is a model like any other: `ChatOpenAI` pointed at `sift serve`,
sent the whole conversation (the earlier turns are context for the question). The server
keeps the SIFT run under its own thread (printed), in its own checkpoint store.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.runtime import Runtime

from sift_graph import SiftContext
from sift_graph.answers import extract_answer
from sift_graph.checkpoints import RUN_DURABILITY, open_checkpointer
from sift_graph.messages import build_sift_messages_graph, last_human_text
from sift_graph.models import resolve_model

_MATH_WORDS = re.compile(
    r"\b(how (many|much|far|long)|calculate|compute|solve|sum|product|total|percent|average|equation|remainder)\b",
    re.IGNORECASE,
)
_ARITHMETIC = re.compile(r"\d\s*[-+*/^=]\s*\d|\$\d|\d+\s*%")


def looks_like_math(text: str) -> bool:
    """A cheap router: numbers together with arithmetic or a quantity question."""
    has_number = bool(re.search(r"\d", text))
    return bool(_ARITHMETIC.search(text)) or (has_number and bool(_MATH_WORDS.search(text)))


def route(state: MessagesState) -> str:
    return "sift" if looks_like_math(last_human_text(state["messages"])) else "chat"


def chat(state: MessagesState, runtime: Runtime[SiftContext]) -> dict:
    """Everything that is not math: one plain call with the conversation so far."""
    context = runtime.context or SiftContext()
    model = resolve_model(context.model, context.connection, context.load_options)
    reply = model.invoke(state["messages"], {"tags": ["sift:chat"]}, max_tokens=context.max_tokens)
    return {"messages": [AIMessage(content=reply.content, name="chat")]}


def sift_over_openai_api(url: str, max_tokens: int):
    """The `sift` node as a call to `sift serve` through ChatOpenAI: one AI message, as the
    in-process adapter answers (the solution, its answer, and the server's thread)."""
    model = ChatOpenAI(
        model="sift", base_url=url, api_key="unused", max_tokens=max_tokens, include_response_headers=True
    )

    def ask_sift(state: MessagesState) -> dict:
        reply = model.invoke(state["messages"])
        metadata = {
            "sift_answer": extract_answer(reply.text),
            "sift_thread": reply.response_metadata["headers"]["x-sift-thread-id"],
        }
        return {"messages": [AIMessage(content=reply.content, name="sift", response_metadata=metadata)]}

    return ask_sift


def build_math_agent(sift_url: str | None = None, max_tokens: int = 64) -> StateGraph:
    builder = StateGraph(MessagesState, context_schema=SiftContext)
    if sift_url is None:
        builder.add_node("sift", build_sift_messages_graph().compile())
    else:
        builder.add_node("sift", sift_over_openai_api(sift_url, max_tokens))
    builder.add_node("chat", chat)
    builder.add_conditional_edges(START, route, ["sift", "chat"])
    builder.add_edge("sift", END)
    builder.add_edge("chat", END)
    return builder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--checkpoints", default=str(Path(tempfile.gettempdir()) / "sift-math-agent.sqlite"))
    parser.add_argument("--thread", default="math-agent-demo")
    parser.add_argument("--sift-url", default=None, help="ask SIFT at this `sift serve` (.../v1) through ChatOpenAI")
    args = parser.parse_args()

    context = SiftContext(model=args.model, base_url=args.base_url, max_tokens=args.max_tokens)
    config = {"configurable": {"thread_id": args.thread}}
    questions = [
        "Say hello to the reader in one short sentence.",
        "A pen costs $2 and a notebook costs 3 times as much. How much do 2 pens and 1 notebook cost?",
    ]
    with open_checkpointer(args.checkpoints) as saver:
        agent = build_math_agent(args.sift_url, args.max_tokens).compile(checkpointer=saver)
        for question in questions:
            print(f"user: {question}")
            for namespace, mode, chunk in agent.stream(
                {"messages": [HumanMessage(question)]},
                config,
                context=context,
                stream_mode=["custom", "updates"],
                subgraphs=True,
                durability=RUN_DURABILITY,
            ):
                if mode == "custom":  # SIFT's stages, from inside the subgraph
                    print(f"  [{namespace[0].split(':')[0]}] {chunk['stage']} (round {chunk.get('round', '-')})")
                elif not namespace:  # the agent's own steps
                    print(f"  routed to: {', '.join(chunk)}")
            answer = agent.get_state(config).values["messages"][-1]
            print(f"{answer.name}: {answer.text.strip()[-200:]}")
            if answer.name == "sift":
                print(f"  (SIFT answer: {answer.response_metadata['sift_answer']})")
            if "sift_thread" in answer.response_metadata:
                print(f"  (sift serve thread: {answer.response_metadata['sift_thread']})")


if __name__ == "__main__":
    main()
