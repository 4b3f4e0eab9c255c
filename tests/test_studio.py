"""The graph exported for LangGraph Studio / `langgraph dev`."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph, StateGraph

from sift_graph import SiftContext, build_sift_graph
from sift_graph.context import run_settings, setting_specs
from sift_graph.state import SiftInput, SiftOutput
from sift_graph.testing import QUESTION, script_for

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


def test_studios_context_form_has_only_the_run_settings():
    properties = load_exported_graph().get_context_jsonschema()["properties"]
    assert set(properties) == set(run_settings(SiftContext()))
    assert not set(properties) & {spec.name for spec in setting_specs() if spec.deployment}
    assert properties["max_tokens"]["description"] == "new-token limit of every model call"


def test_studios_context_form_shows_each_fields_help_type_default_and_bounds(monkeypatch):
    monkeypatch.setenv("SIFT_MAX_TOKENS_LIMIT", "512")
    monkeypatch.setenv("SIFT_TEMPERATURE", "0.5")
    properties = load_exported_graph().get_context_jsonschema()["properties"]
    specs = {spec.name: spec for spec in setting_specs()}
    for name, shown in properties.items():
        assert shown["description"] == specs[name].description, name

    def form(name, *keys):
        return tuple(properties[name][key] for key in keys)

    bounded = ("type", "default", "minimum", "maximum")
    assert form("temperature", *bounded) == ("number", 0.5, 0, 2)  # the deployment's default
    assert form("max_stage", *bounded) == ("integer", 3, 1, 3)
    # This deployment's limits are the form's maxima (a value past them is refused); the
    # default comes down to a lowered limit.
    assert form("max_tokens", *bounded) == ("integer", 512, 1, 512)
    assert form("forward_rounds", *bounded) == ("integer", 1, 0, 4)
    assert form("top_p", "anyOf", "default") == (
        [{"type": "number", "exclusiveMinimum": 0, "maximum": 1}, {"type": "null"}],
        None,
    )
    assert form("comparator", "type", "enum", "default") == ("string", ["math", "string"], "math")


def scripted_deployment(monkeypatch, tmp_path, script, **env):
    """The exported graph of a deployment whose model (`SIFT_MODEL`) is a scripted file."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"script": script}), encoding="utf-8")
    monkeypatch.setenv("SIFT_MODEL", f"scripted:{path}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_exported_graph()


def test_a_json_context_as_the_server_sends_it(monkeypatch, tmp_path):
    from sift_graph.models.specs import resolve_model

    graph = scripted_deployment(monkeypatch, tmp_path, script_for(["1"], ["2"]))
    result = graph.invoke({"question": QUESTION}, context={"forward_rounds": 0, "inverse_rounds": 0, "max_tokens": 9})
    assert result["consensus_round"] is None
    model = resolve_model(os.environ["SIFT_MODEL"])  # the deployment's, as loaded by the run
    assert model.call_counts() == {"sticker": 1, "predict_sticker": 1, "predict_query_sticker": 1, "direct": 1}
    assert model.calls[0].kwargs["max_tokens"] == 9


@pytest.mark.parametrize(
    "setting",
    [
        {"base_url": "http://127.0.0.1:9/v1"},
        {"api_key": "sk-client"},
        {"cache": "/tmp/anywhere.sqlite"},
        {"model": "openai:gpt-4o"},
        {"dtype": "float32"},
        {"request_timeout": 1},
    ],
)
def test_a_context_naming_a_deployment_setting_is_refused_before_any_call(monkeypatch, tmp_path, setting):
    from sift_graph.models.specs import resolve_model

    graph = scripted_deployment(monkeypatch, tmp_path, script_for(["1"], ["2"]))
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"^{name}: a deployment setting"):
        graph.invoke({"question": QUESTION}, context={"max_tokens": 9, **setting})
    assert resolve_model(os.environ["SIFT_MODEL"]).calls == []


def test_the_deployment_bounds_what_a_run_may_ask_for(monkeypatch, tmp_path):
    graph = scripted_deployment(
        monkeypatch, tmp_path, script_for(["1"], ["1"]), SIFT_MAX_TOKENS_LIMIT="100", SIFT_MAX_ROUNDS_LIMIT="2"
    )
    with pytest.raises(ValueError, match=r"^max_tokens: this deployment allows at most 100, got 101"):
        graph.invoke({"question": QUESTION}, context={"max_tokens": 101})
    with pytest.raises(ValueError, match=r"^inverse_rounds: this deployment allows at most 2 rounds, got 3"):
        graph.invoke({"question": QUESTION}, context={"inverse_rounds": 3})
    assert graph.invoke({"question": QUESTION}, context={"max_tokens": 100})["answer"] == "1"


def test_the_library_graph_still_takes_every_setting():
    context = build_sift_graph().compile().get_context_jsonschema()["properties"]
    assert {spec.name for spec in setting_specs()} - {"api_key"} <= set(context) | {"api_key"}
