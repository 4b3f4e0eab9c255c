"""SIFT behind a chat interface, as served by `langgraph dev` / the LangGraph server.

Input and output are `messages`: Studio's chat view sends a human message and shows
SIFT's answer as an AI message; the stages stream from the inner SIFT subgraph.
Compiled without a checkpointer: the server brings its own persistence.
"""

from sift_graph.messages import build_sift_messages_graph

graph = build_sift_messages_graph().compile(name="sift_chat")
