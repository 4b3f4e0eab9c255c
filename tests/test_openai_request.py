"""The OpenAI-compatible client's lean request, built from ChatOpenAI's public fields:
which calls take it, what they send, and that every other call is the stock client's."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from sift_graph.models import OpenAICompatibleChatModel
from sift_graph.models.openai_request import chat_completion_payload, takes_lean_path
from sift_graph.prompts import sticker_prompt
from sift_graph.testing import QUESTION, script_for

from fault_server import FaultServer
from helpers import flatten


@pytest.fixture
def server():
    running = FaultServer(flatten(script_for(["4"], ["4"]))).start()
    yield running
    running.stop()


def model(**settings) -> OpenAICompatibleChatModel:
    return OpenAICompatibleChatModel(**{"model": "m", "api_key": "k", "base_url": "http://127.0.0.1:9/v1", **settings})


@pytest.mark.parametrize(
    ("settings", "call", "lean"),
    [
        ({}, {}, True),
        ({}, {"max_tokens": 9, "temperature": 0.6, "top_p": 0.9, "seed": 3, "stream": True}, True),
        ({"extra_body": {"top_k": 5}}, {"extra_headers": {"x-a": "1"}, "timeout": 2.0}, True),
        ({}, {"tools": [{"type": "function", "function": {"name": "f"}}]}, False),
        ({}, {"response_format": {"type": "json_object"}}, False),
        ({"model_kwargs": {"parallel_tool_calls": False}}, {}, False),
        ({"use_responses_api": True}, {}, False),
        ({"reasoning": {"effort": "low"}}, {}, False),
        ({"include_response_headers": True}, {}, False),
        ({"n": 2}, {}, False),
        ({"logprobs": True}, {}, False),
        ({"output_version": "responses/v1"}, {}, False),
    ],
)
def test_only_a_plain_chat_completion_takes_the_lean_path(settings, call, lean):
    assert takes_lean_path(model(**settings), call) is lean


def test_the_payload_is_built_from_public_fields_and_the_calls_arguments():
    chat = model(temperature=0.2, max_tokens=64, stop=["##"], seed=1, extra_body={"top_k": 5})
    messages = [SystemMessage("be brief"), HumanMessage("2+2?"), AIMessage("4")]
    payload = chat_completion_payload(chat, messages, None, {"temperature": 0.7, "stream": True}, "max_tokens")
    assert payload == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
        "temperature": 0.7,  # the call's setting wins
        "seed": 1,
        "stop": ["##"],
        "max_tokens": 64,
        "extra_body": {"top_k": 5},
    }
    assert chat_completion_payload(chat, messages, ["!"], {}, "max_tokens")["stop"] == ["!"]


@pytest.mark.parametrize("call_key", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("limit_key", ["max_tokens", "max_completion_tokens"])
def test_the_token_limit_goes_out_under_the_servers_name(call_key, limit_key):
    chat = model(max_tokens=64)
    assert chat_completion_payload(chat, [HumanMessage("hi")], None, {}, limit_key)[limit_key] == 64
    payload = chat_completion_payload(chat, [HumanMessage("hi")], None, {call_key: 9}, limit_key)
    assert payload[limit_key] == 9 and set(payload).isdisjoint({"max_tokens", "max_completion_tokens"} - {limit_key})


def test_a_call_the_lean_path_leaves_is_the_stock_clients(server):
    """Tools go the stock way, as `ChatOpenAI` sends them: the limit as
    `max_completion_tokens` whatever `token_limit_param` says (the class's docstring says
    why), and the reply read by the stock client."""
    chat = OpenAICompatibleChatModel(model="test-model", base_url=server.base_url, api_key="no-key", max_tokens=32)
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}
    reply = chat.bind_tools([tool]).invoke([HumanMessage(sticker_prompt(QUESTION))])
    (request,) = server.requests
    assert request["tools"][0]["function"]["name"] == "add" and not request.get("stream")
    assert request["max_completion_tokens"] == 32 and "max_tokens" not in request
    assert reply.text and reply.usage_metadata["output_tokens"] > 0
