"""The trust boundary on the LangGraph server's own API (runs, assistants, crons).

The server filters a run's context through the graph's context schema, which holds the
run settings only, so a `base_url` a client sends would be dropped without a word. This
middleware (the custom HTTP app's, which the LangGraph server applies to every route)
refuses it instead: a JSON body whose `context` or `config.configurable` names a
deployment setting gets a 400 naming the field, in OpenAI's error shape, and the
request goes no further (no run, no assistant, no model call).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sift_graph.deployment import DEPLOYMENT_SETTINGS, refuse_deployment_settings
from sift_graph.serve.errors import bad_request

_WRITES = frozenset({"POST", "PUT", "PATCH"})


def _settings_in(payload: Any) -> Iterator[Mapping[str, Any]]:
    """The client-chosen settings of a request body (a batch is a list of bodies)."""
    for item in payload if isinstance(payload, list) else [payload]:
        if not isinstance(item, Mapping):
            continue
        if isinstance(context := item.get("context"), Mapping):
            yield context
        config = item.get("config")
        if isinstance(config, Mapping) and isinstance(configurable := config.get("configurable"), Mapping):
            yield configurable


def deployment_setting_named(payload: Any) -> str | None:
    """The refusal of a body that names a deployment setting in a context, else None
    (other keys are the server's to judge: `configurable` holds its own too)."""
    for settings in _settings_in(payload):
        try:
            refuse_deployment_settings({name: None for name in settings if name in DEPLOYMENT_SETTINGS})
        except ValueError as exc:
            return str(exc)
    return None


class DeploymentSettingsGuard:
    """ASGI middleware: a write whose JSON body sets a deployment setting is a 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITES:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        refusal = _refusal(body)
        if refusal is not None:
            field = refusal.partition(":")[0]
            error = bad_request(refusal, field)
            await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _refusal(body: bytes) -> str | None:
    if not body:
        return None
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None  # not ours to judge: the route answers for its own body
    return deployment_setting_named(payload)
