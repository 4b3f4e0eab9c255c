"""`sift serve`'s pure parts: reading a chat completion request, the response bodies
(checked against the official SDK's own types), error mapping and the settings."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from sift_graph import SiftContext
from sift_graph.deployment import Deployment, RunLimits
from sift_graph.events import consensus_event, direct_event
from sift_graph.serve.errors import ApiError, RunCancelled, ServerBusy, api_error_for, redact
from sift_graph.serve.payloads import (
    Stamp,
    chunk_payload,
    completion_payload,
    finish_reason,
    models_payload,
    sift_extension,
    usage_chunk_payload,
    usage_payload,
)
from sift_graph.serve.protocol import CONTEXT_HEADER, context_for, parse_chat_request, question_from_messages
from sift_graph.serve.settings import ServeSettings, settings_from_env

QUESTION = "Ann has 3 apples and buys 2 more. How many apples does she have?"


def user(text):
    return {"role": "user", "content": text}


def body(**fields):
    return {"model": "sift", "messages": [user(QUESTION)], **fields}


def test_a_plain_request():
    request = parse_chat_request(body())
    assert request.question == QUESTION
    assert (request.stream, request.include_usage, dict(request.decoding)) == (False, False, {})


def test_streaming_usage_and_decoding_are_read():
    request = parse_chat_request(
        body(stream=True, stream_options={"include_usage": True}, temperature=0.6, top_p=0.9, max_tokens=77)
    )
    assert request.stream and request.include_usage
    assert dict(request.decoding) == {"temperature": 0.6, "top_p": 0.9, "max_tokens": 77}
    # the newer name wins; nulls are "not given"
    newer = parse_chat_request(body(max_tokens=10, max_completion_tokens=20, temperature=None))
    assert dict(newer.decoding) == {"max_completion_tokens": 20}


def test_earlier_messages_become_context_before_the_question():
    messages = [
        {"role": "system", "content": "You are a patient tutor."},
        user("Ann has 3 apples."),
        {"role": "assistant", "content": [{"type": "text", "text": "Noted."}]},
        user([{"type": "text", "text": "She buys 2 more."}, {"type": "text", "text": "How many now?"}]),
    ]
    assert question_from_messages(messages) == (
        f"{CONTEXT_HEADER}\nSystem: You are a patient tutor.\nUser: Ann has 3 apples.\nAssistant: Noted.\n\n"
        "She buys 2 more.\nHow many now?"
    )


@pytest.mark.parametrize(
    ("request_body", "param", "words"),
    [
        ([1], None, "JSON object"),
        ({"messages": [user("q")]}, "model", "model: expected"),
        (body(messages=[]), "messages", "non-empty list"),
        (body(messages="hi"), "messages", "non-empty list"),
        (body(messages=[user("q"), {"role": "assistant", "content": "a"}]), "messages", "last message"),
        (body(messages=[user("   ")]), "messages", "empty"),
        (body(messages=[{"role": "tool", "content": "42", "tool_call_id": "t"}, user("q")]), "messages", "tools"),
        (
            body(messages=[{"role": "assistant", "tool_calls": [{"id": "t"}]}, user("q")]),
            "messages",
            "tool calls",
        ),
        (body(messages=[{"role": "robot", "content": "q"}]), "messages", "messages[0].role"),
        (
            body(messages=[user([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}])]),
            "messages",
            "text only",
        ),
        (body(messages=[user(42)]), "messages", "messages[0].content"),
        (body(n=2), "n", "one answer"),
        (body(tools=[{"type": "function", "function": {"name": "f"}}]), "tools", "no tools"),
        (body(response_format={"type": "json_object"}), "response_format", "text only"),
        (body(stream="yes"), "stream", "true or false"),
        (body(stream=True, stream_options=[]), "stream_options", "an object"),
        (body(stream=True, stream_options={"include_usage": 1}), "include_usage", "true or false"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(request_body, param, words):
    with pytest.raises(ApiError) as raised:
        parse_chat_request(request_body)
    assert raised.value.status == 400 and raised.value.param == param
    assert words in raised.value.message
    assert raised.value.body()["error"]["type"] == "invalid_request_error"


def test_another_model_is_404():
    with pytest.raises(ApiError) as raised:
        parse_chat_request(body(model="gpt-4o"))
    assert raised.value.status == 404 and raised.value.code == "model_not_found"
    assert "'gpt-4o'" in raised.value.message and "'sift'" in raised.value.message


def test_decoding_overrides_the_servers_defaults():
    defaults = SiftContext(model="default", max_tokens=512, temperature=0.0, forward_rounds=2)
    context = context_for(Deployment(context=defaults), {"max_completion_tokens": 64, "temperature": 0.7, "top_p": 0.9})
    assert (context.max_tokens, context.temperature, context.top_p, context.forward_rounds) == (64, 0.7, 0.9, 2)
    assert defaults.max_tokens == 512  # the server's own settings are not touched


@pytest.mark.parametrize(
    ("decoding", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"max_tokens": 4097}, "max_tokens"),
    ],
)
def test_bad_decoding_values_are_400_naming_the_parameter(decoding, param):
    with pytest.raises(ApiError) as raised:
        context_for(Deployment(), decoding)
    assert raised.value.status == 400 and raised.value.param == param
    assert raised.value.message.startswith((f"{param}: expected", f"{param}: this deployment allows at most"))


@pytest.mark.parametrize("name", ["base_url", "api_key", "cache", "dtype", "request_timeout"])
def test_a_body_naming_a_deployment_setting_is_400_naming_it(name):
    with pytest.raises(ApiError) as raised:
        parse_chat_request(body(**{name: "http://127.0.0.1:9/v1"}))
    assert raised.value.status == 400 and raised.value.param == name
    assert raised.value.message.startswith(f"{name}: a deployment setting")


def test_max_tokens_is_capped_by_the_deployments_limit():
    deployment = Deployment(context=SiftContext(max_tokens=64), limits=RunLimits(max_tokens=100))
    assert context_for(deployment, {"max_tokens": 100}).max_tokens == 100
    with pytest.raises(ApiError) as raised:
        context_for(deployment, {"max_completion_tokens": 101})
    assert raised.value.status == 400 and raised.value.param == "max_completion_tokens"


def output(consensus_round=2):
    usage = {
        "sticker": {"calls": 1, "input_tokens": 100, "output_tokens": 20},
        "predict_sticker": {"calls": 2, "input_tokens": 60, "output_tokens": 30},
    }
    prediction = {"text": "", "reasoning": None, "truncated": False}
    rounds = [
        {
            "round": 1,
            "kind": "sticker",
            "predict_sticker": {**prediction, "answer": "4"},
            "predict_query_sticker": {**prediction, "answer": "3"},
            "agreed": False,
        }
    ]
    return {
        "answer": "5",
        "response": "so \\boxed{5}",
        "consensus_round": consensus_round,
        "rounds": rounds,
        "usage": usage,
    }


STAMP = Stamp("0f6c1d1e-thread", 1700000000)


def test_a_completion_is_what_the_official_sdk_reads():
    events = [consensus_event(1, False, ["4", "3"], False)]
    payload = completion_payload(output(), events, STAMP)
    completion = ChatCompletion.model_validate(payload)
    assert completion.choices[0].message.content == "so \\boxed{5}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 160 and completion.usage.completion_tokens == 50
    assert completion.usage.total_tokens == 210
    assert completion.id == "chatcmpl-0f6c1d1e-thread" and completion.model == "sift"
    assert completion.sift == {
        "thread_id": "0f6c1d1e-thread",
        "answer": "5",
        "consensus_round": 2,
        "rounds": [{"round": 1, "kind": "sticker", "answers": ["4", "3"], "agreed": False}],
        "usage": output()["usage"],
    }


def test_chunks_are_what_the_official_sdk_reads():
    reasoning = ChatCompletionChunk.model_validate(chunk_payload({"reasoning_content": "[round 1] ..."}, STAMP))
    assert reasoning.choices[0].delta.reasoning_content == "[round 1] ..."
    finish = ChatCompletionChunk.model_validate(
        chunk_payload({}, STAMP, finish="stop", sift=sift_extension(output(), STAMP.thread_id))
    )
    assert finish.choices[0].finish_reason == "stop" and finish.sift["answer"] == "5"
    usage = ChatCompletionChunk.model_validate(usage_chunk_payload(output()["usage"], STAMP))
    assert usage.choices == [] and usage.usage.total_tokens == 210
    assert models_payload(1)["data"][0]["id"] == "sift"


def test_a_cut_off_fallback_finishes_with_length():
    assert finish_reason([direct_event("7", truncated=True)]) == "length"
    assert finish_reason([direct_event("7", truncated=False)]) == "stop"
    assert finish_reason([consensus_event(1, False, [None, "3"], truncated=True)]) == "stop"
    assert usage_payload({}) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def upstream_error(status, message="boom"):
    request = httpx.Request("POST", "http://upstream/v1/chat/completions")
    response = httpx.Response(status, request=request, json={"error": {"message": message}})
    return openai.APIStatusError(message, response=response, body={"error": {"message": message}})


SECRET = "sk-test-5b2d4f6a8c0e7f3a9c1e"


@pytest.mark.parametrize(
    ("exc", "status", "words"),
    [
        (upstream_error(503, "overloaded"), 502, "the upstream model failed: the model server answered HTTP 503"),
        (upstream_error(400, "context too long"), 502, "context too long"),
        (ConnectionError("refused"), 502, "ConnectionError: refused"),
        (openai.APITimeoutError(request=httpx.Request("POST", "http://upstream")), 504, "did not answer in time"),
        (upstream_error(504), 504, "did not answer in time"),
        (TimeoutError(), 504, "did not answer in time"),
        (RunCancelled("run t was cancelled"), 503, "run t was cancelled; the server is shutting down"),
        (KeyError("bug"), 500, "internal error: KeyError"),
    ],
)
def test_failures_map_to_a_status_and_one_message(exc, status, words):
    error = api_error_for(exc)
    assert error.status == status and words in error.message


def test_no_secret_reaches_an_error_message():
    echoed = api_error_for(upstream_error(401, f"Incorrect API key provided: {SECRET[:6]}***{SECRET[-4:]}"), [SECRET])
    assert echoed.status == 502 and "refused the API key (HTTP 401)" in echoed.message
    assert SECRET[-4:] not in echoed.message
    leaked = api_error_for(ConnectionError(f"cannot reach http://u:{SECRET}@host"), [SECRET, None])
    assert SECRET not in leaked.message and "[redacted]" in leaked.message
    assert redact("nothing here", [None, ""]) == "nothing here"


def test_busy_is_429_with_retry_after():
    error = api_error_for(ServerBusy(4))
    assert error.status == 429 and error.headers == {"Retry-After": "1"} and "4 requests" in error.message
    assert error.body()["error"]["code"] == "rate_limit_exceeded"


def test_settings_from_the_environment():
    settings = settings_from_env(
        {
            "SIFT_MODEL": "openai:qwen",
            "SIFT_BASE_URL": "http://vllm:8000/v1",
            "SIFT_MAX_TOKENS": "256",
            "SIFT_TEMPERATURE": "0.6",
            "SIFT_FORWARD_ROUNDS": "2",
            "SIFT_API_KEY": SECRET,  # not a variable we read: the key is OPENAI_API_KEY's
            "SIFT_CHECKPOINTS": "postgresql://sift@db/sift",
            "SIFT_MAX_CONCURRENCY": "4",
        }
    )
    context = settings.context
    assert (context.model, context.base_url, context.max_tokens) == ("openai:qwen", "http://vllm:8000/v1", 256)
    assert (context.temperature, context.forward_rounds, context.api_key) == (0.6, 2, None)
    assert (settings.checkpoints, settings.max_concurrency) == ("postgresql://sift@db/sift", 4)
    empty = settings_from_env({})
    assert empty.context == SiftContext() and empty.max_concurrency == 16
    assert empty.checkpoints.endswith("checkpoints.sqlite")


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"SIFT_MAX_TOKENS": "many"}, "SIFT_MAX_TOKENS: expected an integer, got 'many'"),
        ({"SIFT_TEMPERATURE": "9"}, "SIFT_TEMPERATURE: temperature: expected a number in [0, 2]"),
        ({"SIFT_MODEL": "gpt-4"}, "SIFT_MODEL: model: unknown model spec"),
        ({"SIFT_MAX_CONCURRENCY": "0"}, "SIFT_MAX_CONCURRENCY: expected an integer >= 1"),
    ],
)
def test_a_bad_variable_is_named(environ, words):
    with pytest.raises(ValueError) as raised:
        settings_from_env(environ)
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "words"), [({"max_concurrency": 0}, "max_concurrency"), ({"checkpoints": ""}, "checkpoints")]
)
def test_bad_settings_are_named(fields, words):
    with pytest.raises(ValueError, match=words):
        ServeSettings(**fields)


def test_the_clis_names_still_work():
    from sift_graph import cli, narration
    from sift_graph.cli import output, solve

    assert cli.format_event is output.format_event is narration.format_event
    assert solve.SETTINGS_METADATA_KEY == "sift_settings"
