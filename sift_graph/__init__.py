"""sift_graph: SIFT ("Stick to the Facts") as a LangGraph graph.

from sift_graph import build_sift_graph, SiftContext

graph = build_sift_graph().compile()
result = graph.invoke({"question": "..."}, context=SiftContext(model="default"))
"""

from sift_graph.context import SiftContext
from sift_graph.graph import build_sift_graph

__all__ = ["SiftContext", "build_sift_graph"]
