"""The graph exported for LangGraph Studio / `langgraph dev`."""

import importlib.util
import json
from pathlib import Path

from langgraph.graph.state import CompiledStateGraph, StateGraph

from sift_graph import SiftContext, build_sift_graph
from sift_graph.state import SiftInput, SiftOutput

ROOT = Path(__file__).resolve().parent.parent
NODES = {
    "generate_sticker",
    "predict_sticker",
    "predict_query_sticker",
    "check_consensus",
    "forward_optimize",
    "inverse_generate",
    "direct_answer",
}


def load_exported_graph():
    config = json.loads((ROOT / "langgraph.json").read_text())
    target = config["graphs"]["sift"]
    path, _, attribute = target.partition(":")
    spec = importlib.util.spec_from_file_location("studio_sift", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def test_builder_is_uncompiled_with_the_public_schemas():
    builder = build_sift_graph()
    assert isinstance(builder, StateGraph)
    assert builder.context_schema is SiftContext
    assert builder.input_schema is SiftInput and builder.output_schema is SiftOutput


def test_langgraph_json_names_a_compiled_graph_without_checkpointer():
    graph = load_exported_graph()
    assert isinstance(graph, CompiledStateGraph)
    assert graph.checkpointer is None
    assert graph.name == "sift"


def test_mermaid_shows_every_node_and_the_loop():
    mermaid = load_exported_graph().get_graph().draw_mermaid()
    for node in NODES:
        assert f"\t{node}({node})" in mermaid
    for edge in (
        "generate_sticker --> predict_sticker",
        "generate_sticker --> predict_query_sticker",
        "predict_sticker --> check_consensus",
        "predict_query_sticker --> check_consensus",
        "check_consensus -.-> forward_optimize",
        "check_consensus -.-> inverse_generate",
        "check_consensus -.-> direct_answer",
        "check_consensus -.-> __end__",
        "inverse_generate --> forward_optimize",
        "forward_optimize --> predict_sticker",
        "forward_optimize --> predict_query_sticker",
        "direct_answer --> __end__",
    ):
        assert edge in mermaid


def test_input_and_output_json_schemas():
    graph = load_exported_graph()
    assert graph.get_input_jsonschema()["required"] == ["question"]
    assert set(graph.get_output_jsonschema()["properties"]) == {
        "answer",
        "response",
        "consensus_round",
        "sticker",
        "rounds",
        "usage",
    }


def test_context_fields_are_settable_from_studio():
    properties = load_exported_graph().get_context_jsonschema()["properties"]
    assert {"model", "forward_rounds", "inverse_rounds", "max_tokens", "temperature", "base_url"} <= set(properties)
    assert properties["model"]["anyOf"] == [{"type": "string"}, {"type": "null"}]


def test_a_json_context_as_the_server_sends_it(monkeypatch):
    from sift_graph.testing import QUESTION, ScriptedChatModel, script_for

    model = ScriptedChatModel(script=script_for(["1"], ["2"]))
    monkeypatch.setattr("sift_graph.nodes.resolve_model", lambda spec, connection=None, options=None: model)
    result = load_exported_graph().invoke(
        {"question": QUESTION}, context={"model": "default", "forward_rounds": 0, "inverse_rounds": 0, "max_tokens": 9}
    )
    assert result["consensus_round"] is None
    assert model.call_counts() == {"sticker": 1, "predict_sticker": 1, "predict_query_sticker": 1, "direct": 1}
    assert model.calls[0].kwargs["max_tokens"] == 9
