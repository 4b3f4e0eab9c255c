"""How the OpenAI-compatible client's failures read: mapped as the stock client maps
them, a dropped stream as a dropped connection, a malformed reply named, and the API
key never in an error's text."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai

from sift_graph.faults import redact

NO_KEY = "no-key"  # local servers ignore the key, but the client insists on one
CONTEXT_OVERFLOW_CODE = "context_length_exceeded"
"""The error code OpenAI's API gives a prompt longer than the model's context."""


def chat_completion_problem(response: Any) -> str | None:
    """What makes a parsed reply not an OpenAI chat completion, or None when it is one."""
    if isinstance(response, str):
        snippet = " ".join(response.split())[:60]
        return f"text ({snippet!r})" if snippet else "an empty body"
    if not isinstance(response, dict):
        return f"a JSON {type(response).__name__}"
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        return "a reply with no choices"
    if not all(isinstance(choice, dict) and isinstance(choice.get("message"), dict) for choice in choices):
        return "a choice with no message"
    return None


def transport_errors() -> tuple[type[Exception], ...]:
    """The transport errors of the HTTP libraries the SDK may be built on (it moved
    from httpx to httpx2): a stream read after `post` returned raises them unmapped."""
    import importlib

    found: list[type[Exception]] = []
    for library in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(library).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


@contextmanager
def stream_errors_mapped(request: Any) -> Iterator[None]:
    """A connection dropped mid-stream fails as one dropped before the reply: an
    `openai.APIConnectionError`, a transient fault that the graph retries."""
    try:
        yield
    except transport_errors() as error:
        raise openai.APIConnectionError(message=f"the stream broke off: {error}", request=request) from error


def langchain_error(error: openai.APIError) -> openai.APIError:
    """`error` as the LangChain type langchain-openai raises for it (both an SDK error and a
    `langchain_core.exceptions` model error: `ContextOverflowError`, `ModelRateLimitError`,
    ...), or `error` itself when it has none. The types are langchain-openai's public
    ones; which SDK error becomes which is checked against the stock client by
    tests/test_openai_faults.py."""
    from langchain_core.exceptions import LangChainException
    from langchain_openai.chat_models import base as stock

    if isinstance(error, LangChainException):  # mapped already
        return error
    if isinstance(error, openai.BadRequestError):
        overflow = error.code == CONTEXT_OVERFLOW_CODE
        bad_request = stock.OpenAIContextOverflowError if overflow else stock.OpenAIInvalidRequestError
        return bad_request(error.message, response=error.response, body=error.body)
    if isinstance(error, openai.APITimeoutError):
        return stock.OpenAITimeoutError(request=error.request)
    if isinstance(error, openai.APIConnectionError):
        return stock.OpenAIConnectionError(message=error.message, request=error.request)
    if not isinstance(error, openai.APIStatusError):
        return error
    status_kinds: dict[type[openai.APIError], type[openai.APIStatusError]] = {
        openai.AuthenticationError: stock.OpenAIAuthenticationError,
        openai.PermissionDeniedError: stock.OpenAIPermissionDeniedError,
        openai.NotFoundError: stock.OpenAIModelNotFoundError,
        openai.RateLimitError: stock.OpenAIRateLimitError,
        openai.InternalServerError: stock.OpenAIAPIError,
    }
    status_kind = status_kinds.get(type(error))
    return error if status_kind is None else status_kind(error.message, response=error.response, body=error.body)


@contextmanager
def openai_errors_mapped() -> Iterator[None]:
    """Map SDK errors as the stock client does, so the lean path and the stock one fail alike."""
    try:
        yield
    except openai.APIError as error:
        mapped = langchain_error(error)
        if mapped is error:
            raise
        raise mapped from error


def _redacted(value: Any, secret: str) -> Any:
    if isinstance(value, str):
        return redact(value, (secret,))
    if isinstance(value, dict):
        return {key: _redacted(item, secret) for key, item in value.items()}
    return value


@contextmanager
def key_kept_out_of_errors(api_key: str | None) -> Iterator[None]:
    """Cut the key out of an error's text (its chain included). Some servers quote the key
    they refused, and the error would carry it on into logs, responses and the checkpoint
    store, where LangGraph records a failed step's error."""
    try:
        yield
    except Exception as error:
        chained: BaseException | None = error
        while api_key and api_key != NO_KEY and chained is not None:
            chained.args = tuple(_redacted(arg, api_key) for arg in chained.args)
            for name in ("message", "body"):
                if hasattr(chained, name):
                    setattr(chained, name, _redacted(getattr(chained, name), api_key))
            chained = chained.__cause__ or chained.__context__
        raise
