"""SIFT on one question with the embedded default model, printing each stage as it streams.

.venv/bin/python examples/quickstart.py
"""

from sift_graph import SiftContext, build_sift_graph

QUESTION = "A pen costs $2 and a notebook costs 3 times as much. How much do 2 pens and 1 notebook cost?"

graph = build_sift_graph().compile()
context = SiftContext(model="default", max_tokens=96)  # any LangChain chat model works here too

result = None
for mode, chunk in graph.stream({"question": QUESTION}, context=context, stream_mode=["custom", "values"]):
    if mode == "custom":  # one event per SIFT stage, as it happens
        print({key: value for key, value in chunk.items() if key != "sticker"})
    else:
        result = chunk

print("answer:", result["answer"], "| consensus round:", result["consensus_round"])
print("calls per role:", {role: usage["calls"] for role, usage in result["usage"].items()})
