"""The SIFT graph as served by `langgraph dev` / the LangGraph server (see langgraph.json).

Compiled without a checkpointer: the server brings its own persistence. A run's or an
assistant's context takes the run settings only (rounds, decoding, comparator, seed,
within the deployment's bounds); the model, its server and key, the call cache and the
dtype come from the server's environment (`SIFT_MODEL`, `OPENAI_API_KEY`, ...: see
`sift_graph.deployment`), and a context naming one of them is refused.
"""

from sift_graph import build_sift_graph
from sift_graph.deployment import deployment_from_env

graph = build_sift_graph(deployment=deployment_from_env()).compile(name="sift")
