"""The SIFT graph as served by `langgraph dev` / the LangGraph server (see langgraph.json).

Compiled without a checkpointer: the server brings its own persistence. Run settings
(model spec, round budget, decoding) are the `SiftContext` fields, set per assistant or run.
"""

from sift_graph import build_sift_graph

graph = build_sift_graph().compile(name="sift")
