"""The zero-shot CoT baseline as served by `langgraph dev` / the LangGraph server (see
langgraph.json): `sift eval --server` runs each question's baseline here, beside its SIFT
run on the `sift` graph, so both methods run under the same conditions.

Built as graphs/sift.py is: compiled without a checkpointer (the server brings its own),
its context the run settings only, the model and the rest from the server's environment
(`sift_graph.deployment`).
"""

from sift_graph.deployment import deployment_from_env
from sift_graph.evaluation.runner import build_cot_graph

graph = build_cot_graph(deployment=deployment_from_env()).compile(name="sift_cot")
