"""The zero-shot CoT baseline as served by `langgraph dev` / the LangGraph server (see
langgraph.json): `sift eval --server` runs each question's baseline here, beside its SIFT
run on the `sift` graph, so both methods run under the same conditions.

Built like graphs/sift.py: the library's uncompiled builder, the deployment's settings
as its context's defaults, compiled without a checkpointer (the server brings its own).
"""

from sift_graph.deployment import deployed_context_class
from sift_graph.evaluation.runner import build_cot_graph

builder = build_cot_graph()
builder.context_schema = deployed_context_class()
graph = builder.compile(name="sift_cot")
