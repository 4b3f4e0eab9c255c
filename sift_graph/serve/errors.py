"""Errors as an OpenAI client expects them: a status and `{"error": {"message", "type",
"param", "code"}}`, one clear message each, and no secret in any of them.

| status | when |
|---|---|
| 400 | a bad request: a malformed body, a bad message, a bad decoding value, a feature SIFT lacks |
| 404 | a model this server does not serve |
| 429 | `max_concurrency` runs are in progress (with `Retry-After`) |
| 502 | the upstream model failed and retries could not fix it |
| 504 | the upstream model did not answer in time |
| 503 | the run was stopped before it finished (the server is shutting down) |
| 500 | anything else (a bug: the log has the traceback) |
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sift_graph.faults import describe_fault, is_model_fault
from sift_graph.faults import redact as redact  # its home before the models needed it too

RETRY_AFTER_S = 1
"""What a 429 asks a client to wait: runs take seconds, and a slot frees when any ends."""
_UPSTREAM_TIMEOUT_STATUS = frozenset({408, 504})
_UPSTREAM_AUTH_STATUS = frozenset({401, 403})


class ApiError(Exception):
    """An error response: raised where the problem is found, answered by the app."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value" if param else None)


class ServerBusy(Exception):
    """Every run slot is taken."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"all {limit} run slots are taken")
        self.limit = limit


class RunCancelled(Exception):
    """The run was stopped before it finished; its finished steps are kept."""


def busy_error(exc: ServerBusy) -> ApiError:
    return ApiError(
        429,
        f"sift serve is running its limit of {exc.limit} requests at once; retry in a moment",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _upstream_status(exc: BaseException) -> int | None:
    import openai

    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


def is_timeout(exc: BaseException) -> bool:
    import httpx
    import openai

    timed_out = isinstance(exc, (openai.APITimeoutError, TimeoutError, httpx.TimeoutException))
    return timed_out or _upstream_status(exc) in _UPSTREAM_TIMEOUT_STATUS


def api_error_for(exc: BaseException, secrets: Iterable[str | None] = ()) -> ApiError:
    """The response for a failed request or run; any secret in a message is redacted."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ServerBusy):
        return busy_error(exc)
    if isinstance(exc, RunCancelled):
        message = f"{exc}; the server is shutting down: `sift solve --resume THREAD` finishes the run"
        return ApiError(503, message, type="server_error", code="run_cancelled")
    status = _upstream_status(exc)
    if is_timeout(exc):
        return ApiError(
            504, "the upstream model did not answer in time, retries included", type="server_error", code="timeout"
        )
    if status in _UPSTREAM_AUTH_STATUS:
        # Never the server's own words here: some echo part of the key they refused.
        message = f"the upstream model server refused the API key (HTTP {status})"
        return ApiError(502, message, type="server_error", code="upstream_error")
    if is_model_fault(exc):
        message = redact(f"the upstream model failed: {describe_fault(exc)}", secrets)
        return ApiError(502, message, type="server_error", code="upstream_error")
    return ApiError(500, redact(f"internal error: {describe_fault(exc)}", secrets), type="server_error")
