"""The lean path's request (see `openai_compat`): which calls take it, and the body they
send, built from `ChatOpenAI`'s public fields and the call's keyword arguments (a leaf).

Everything is read through public names: the model's documented fields, langchain-core's
`convert_to_openai_messages`, and the SDK's documented `extra_body` / `extra_headers` /
`extra_query` / `timeout` request options. A call that needs more than these carry (tools,
structured output, several choices, log probabilities, the Responses API) is left to the
stock `ChatOpenAI`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_openai_messages

# Request keys the OpenAI SDK takes as call options rather than as body fields.
_REQUEST_OPTION_KEYS = {"extra_headers": "headers", "extra_query": "params", "timeout": "timeout"}

TOKEN_LIMIT_KEYS = ("max_tokens", "max_completion_tokens")
"""The two names of a chat completion's token limit (`token_limit_param` picks one)."""

BODY_FIELDS = (
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "reasoning_effort",
    "verbosity",
    "service_tier",
    "store",
)
"""`ChatOpenAI` fields a chat completion's body carries, when set, under the same name."""

LEAN_CALL_KEYS = frozenset({*BODY_FIELDS, *TOKEN_LIMIT_KEYS, *_REQUEST_OPTION_KEYS, "stop", "extra_body", "stream"})
"""Call keyword arguments (and `model_kwargs`) the lean path sends as they are; any other
(`tools`, `response_format`, `n`, ...) sends the call the stock way. (`stream` is
the caller's wish to stream: the lean path always does.)"""

STOCK_FIELDS = (
    "use_responses_api",
    "use_previous_response_id",
    "include_response_headers",
    "reasoning",
    "include",
    "truncation",
    "context_management",
    "prompt_cache_options",
    "logprobs",
    "top_logprobs",
    "n",
)
"""`ChatOpenAI` fields that, when set, send every call the stock way: the Responses API,
response headers in the reply's metadata, log probabilities, several choices."""


def takes_lean_path(model: Any, call_kwargs: dict[str, Any]) -> bool:
    """Whether a call of `model` (a `ChatOpenAI`) with these arguments is a plain chat
    completion that the lean path sends whole."""
    if model.output_version == "responses/v1" or any(
        getattr(model, name) not in (None, False) for name in STOCK_FIELDS
    ):
        return False
    return LEAN_CALL_KEYS.issuperset(call_kwargs) and LEAN_CALL_KEYS.issuperset(model.model_kwargs)


def chat_completion_payload(
    model: Any,
    messages: Sequence[BaseMessage],
    stop: list[str] | None,
    call_kwargs: dict[str, Any],
    token_limit_param: str,
) -> dict[str, Any]:
    """What `model` (a `ChatOpenAI`) would pass to `chat.completions.create` for this call,
    the token limit under `token_limit_param`; the call's arguments override the model's
    settings, as they do in `ChatOpenAI`."""
    payload: dict[str, Any] = {"model": model.model_name, "messages": convert_to_openai_messages(list(messages))}
    payload.update((name, value) for name in BODY_FIELDS if (value := getattr(model, name)) is not None)
    settings = {"stop": model.stop or None, "max_tokens": model.max_tokens, "extra_body": model.extra_body}
    payload.update((name, value) for name, value in settings.items() if value is not None)
    payload.update(_one_limit_name(model.model_kwargs))
    payload.update(_one_limit_name(call_kwargs))
    payload.pop("stream", None)
    if stop is not None:
        payload["stop"] = stop
    if (limit := payload.pop("max_tokens", None)) is not None:
        payload[token_limit_param] = limit
    return payload


def _one_limit_name(arguments: dict[str, Any]) -> dict[str, Any]:
    """`arguments` with a token limit under either name as `max_tokens` (named for the server last)."""
    return {("max_tokens" if key in TOKEN_LIMIT_KEYS else key): value for key, value in arguments.items()}


def chat_completion_request(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `chat.completions.create` payload -> (JSON body, request options) for the SDK's
    raw `post`: what `chat.completions.create(**payload)` would send."""
    body = dict(payload)
    extra_body = body.pop("extra_body", None) or {}
    options = {
        option: value for key, option in _REQUEST_OPTION_KEYS.items() if (value := body.pop(key, None)) is not None
    }
    body.update(extra_body)
    return body, options
