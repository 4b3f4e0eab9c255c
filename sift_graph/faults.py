"""Which model-call failures are worth retrying.

A retry helps when the fault is the network's or the server's load (connection refused
or reset, a timeout, HTTP 408/409/429/500/502/503/504). It cannot help bad input, a wrong
key or a missing model (other 4xx), nor a bug: those fail at once with the original error.
"""

from __future__ import annotations

from collections.abc import Iterable

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class MalformedReplyError(Exception):
    """A server answered 200 with something that is not an OpenAI chat completion: invalid
    JSON, an HTML page (a misconfigured proxy or base URL), no choices. Retried like
    a transient fault (an overloaded server or a proxy can send one), then reported
    in one line."""


REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every (non-empty) secret in it replaced by "[redacted]": what a fault's
    message may carry into logs, responses and stores."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def is_transient_fault(exc: BaseException) -> bool:
    import httpx
    import openai

    if isinstance(exc, openai.APIConnectionError):  # refused, reset, dropped; APITimeoutError too
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in RETRYABLE_STATUS
    return isinstance(exc, (ConnectionError, TimeoutError, httpx.TransportError, MalformedReplyError))


def is_unreachable(exc: BaseException) -> bool:
    """The model server could not be reached at all (refused, reset, name not found): not
    a slow answer, nor an error it answered with. Several in a row mean it is gone."""
    import httpx
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return False
    return isinstance(exc, (openai.APIConnectionError, httpx.ConnectError, ConnectionRefusedError))


def is_model_fault(exc: BaseException) -> bool:
    """A failure of the model call itself (transient, or an error the model API returned),
    as opposed to a bug or bad input on our side."""
    import openai

    return is_transient_fault(exc) or isinstance(exc, openai.APIError)


def describe_fault(exc: BaseException) -> str:
    """One line for a person: what failed, without a traceback."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else None
        detail = body.get("message") if isinstance(body, dict) else None
        return f"the model server answered HTTP {exc.status_code}: {detail or exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return "the model server did not answer in time (request_timeout)"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the model server: {exc.__cause__ or exc}"
    if isinstance(exc, MalformedReplyError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
