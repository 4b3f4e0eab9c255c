"""A spec is loaded once per what its loader reads: a served model per connection, a
local one per load options, a registered loader per what it says it reads (both if unsaid)."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from sift_graph import SiftContext
from sift_graph.models import specs
from sift_graph.models.specs import Connection, LoadOptions, is_served, register_loader, resolve_model
from sift_graph.testing import ScriptedChatModel

LOADED: list[tuple[str, Connection, LoadOptions]] = []


def load_recorded(target: str, connection: Connection, options: LoadOptions) -> ScriptedChatModel:
    """A loader a contributor registers: records what it was asked for."""
    LOADED.append((target, connection, options))
    return ScriptedChatModel(script={})


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """Each test registers into its own copy of the registry and of the loaded models."""
    monkeypatch.setattr(specs, "LOADERS", dict(specs.LOADERS))
    monkeypatch.setattr(specs, "_SERVED", dict(specs._SERVED))
    monkeypatch.setattr(specs, "_loaded", OrderedDict())
    LOADED.clear()


FIRST, SECOND = Connection(base_url="http://127.0.0.1:1/v1"), Connection(base_url="http://127.0.0.1:2/v1")
FP32, BF16 = LoadOptions(dtype="float32"), LoadOptions(dtype="bfloat16")


def test_a_registered_served_loader_gets_a_client_per_server_and_ignores_the_dtype():
    register_loader("vllm", f"{__name__}:load_recorded", served=True)
    first = resolve_model("vllm:m", FIRST, FP32)
    assert resolve_model("vllm:m", SECOND, FP32) is not first  # two servers never share a client
    assert resolve_model("vllm:m", FIRST, BF16) is first
    assert len(LOADED) == 2
    assert is_served("vllm:m")
    assert "dtype" not in SiftContext(model="vllm:m").result_settings()


def test_a_registered_local_loader_gets_a_model_per_dtype_and_ignores_the_server():
    register_loader("mine", f"{__name__}:load_recorded", served=False)
    first = resolve_model("mine:m", FIRST, FP32)
    assert resolve_model("mine:m", FIRST, BF16) is not first
    assert resolve_model("mine:m", SECOND, FP32) is first
    assert len(LOADED) == 2
    assert not is_served("mine:m")
    assert SiftContext(model="mine:m", dtype="float32").result_settings()["dtype"] == "float32"


def test_a_loader_that_does_not_say_is_kept_per_server_and_per_dtype():
    register_loader("other", f"{__name__}:load_recorded")
    first = resolve_model("other:m", FIRST, FP32)
    assert resolve_model("other:m", SECOND, FP32) is not first
    assert resolve_model("other:m", FIRST, BF16) is not first
    assert resolve_model("other:m", FIRST, FP32) is first
    assert len(LOADED) == 3
    assert not is_served("other:m")  # its dtype may matter: it stays in the digest


def test_the_built_in_specs_know_whether_they_are_served():
    assert is_served("openai:gpt-4o-mini")
    assert not any(is_served(spec) for spec in ("default", "hf:org/name", "scripted:x.json"))
    assert not is_served(ScriptedChatModel(script={}))
