"""SIFT behind a chat interface, as served by `langgraph dev` / the LangGraph server.

Input and output are `messages`: Studio's chat view sends a human message and shows
SIFT's answer as an AI message; the stages stream from the inner SIFT subgraph.
Compiled without a checkpointer: the server brings its own persistence. Its context
takes the run settings only; the model is the deployment's (as in `graphs/sift.py`).
"""

from sift_graph.deployment import deployment_from_env
from sift_graph.messages import build_sift_messages_graph

graph = build_sift_messages_graph(deployment=deployment_from_env()).compile(name="sift_chat")
