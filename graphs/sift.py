"""The SIFT graph as served by `langgraph dev` / the LangGraph server (see langgraph.json).

Compiled without a checkpointer: the server brings its own persistence. Run settings
(round budget, decoding) are the `SiftContext` fields, set per assistant or run; the
deployment's own (model, its server, cache) default to its `SIFT_<FIELD>` variables.
"""

from sift_graph import build_sift_graph
from sift_graph.deployment import deployed_context_class

builder = build_sift_graph()
builder.context_schema = deployed_context_class()
graph = builder.compile(name="sift")
