"""The HTTP app: `GET /v1/models` and `POST /v1/chat/completions`, on Starlette, and
its runs read-only under `/view` (`sift view`'s pages over this server's own store).

    app = create_app(SiftService(ServeSettings(context=SiftContext(model="openai:qwen"))))

Handlers stay thin: `protocol` reads the request, `service` runs SIFT, `payloads`
writes the answer, `errors` maps what failed. Every run's thread id is in the
`x-sift-thread-id` header (and the `sift` object). A client that hangs up cancels its
run: a plain request is watched for the disconnect while it waits, and a stream
(sse-starlette's `EventSourceResponse`) stops when it sees its client go. A stream with
nothing to send for a while (a long model call) carries keep-alive pings.

`app_from_env()` is the same app for the LangGraph server (langgraph.json `http.app`),
configured from the environment (`settings.settings_from_env`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from sift_graph.live import LiveText, StageText
from sift_graph.narration import format_event
from sift_graph.serve.errors import ApiError, api_error_for, bad_request
from sift_graph.serve.guard import DeploymentSettingsGuard
from sift_graph.serve.payloads import (
    DONE,
    Stamp,
    chunk_payload,
    completion_payload,
    event_data,
    finish_reason,
    models_payload,
    sift_extension,
    usage_chunk_payload,
)
from sift_graph.serve.protocol import ChatRequest, context_for, parse_chat_request
from sift_graph.serve.service import Run, RunFinished, RunItem, SiftService
from sift_graph.serve.settings import SHUTDOWN_TIMEOUT_S, settings_from_env
from sift_graph.view import create_view_app

THREAD_HEADER = "x-sift-thread-id"
VIEW_PREFIX = "/view"
"""Where the server shows its own runs, read-only (`sift view`'s pages, by thread id)."""
CLIENT_CLOSED_STATUS = 499  # never seen by the client: only the access log shows it
MAX_BODY_BYTES = 1 << 20
"""The largest request body read (1 MiB: a longest question, MAX_QUESTION_CHARS, fits
even with every character escaped); a larger one is answered 413 before it is read."""
PING_INTERVAL_S = 15
"""Seconds between keep-alive pings on a stream with nothing else to send: a stage's model
call can take minutes without an event, and a proxy closes a connection idle for long
(often a minute). A ping is an SSE comment line (`: ping ...`), which clients ignore."""
logger = logging.getLogger("sift_graph.serve")
T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client hung up before its answer was ready."""


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientDisconnected as soon as the client hangs up."""
    waiting = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait({waiting, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not waiting.done():
            waiting.cancel()
    # Decided by what finished, not by `waiting.cancelled()`: a task just cancelled is
    # not marked so until it has run again, and its result would then be asked too soon.
    if waiting not in done:
        raise ClientDisconnected
    return waiting.result()


def _too_large() -> ApiError:
    message = f"the request body is larger than the {MAX_BODY_BYTES} bytes this server takes"
    return ApiError(413, message, code="request_too_large")


async def _body(request: Request) -> bytes:
    """The request body; 413 past MAX_BODY_BYTES, read no further than that."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    return bytes(body)


async def _json_body(request: Request) -> Any:
    body = await _body(request)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("the request body is not valid JSON") from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply") from None


class OpenAIRoutes:
    """The route handlers, over one SiftService."""

    def __init__(self, service: SiftService, ping_interval_s: float = PING_INTERVAL_S) -> None:
        self.service = service
        self.ping_interval_s = ping_interval_s

    def _error(self, exc: BaseException, headers: dict[str, str] | None = None) -> ApiError:
        error = api_error_for(exc, secrets=(self.service.settings.context.api_key, os.environ.get("OPENAI_API_KEY")))
        if error.status >= 500:
            thread = (headers or {}).get(THREAD_HEADER, "-")
            trace = exc if error.status == 500 else None  # a bug: its traceback is wanted
            logger.warning("run %s failed (HTTP %d): %s", thread, error.status, error.message, exc_info=trace)
        error.headers.update(headers or {})
        return error

    def _error_response(self, exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
        error = self._error(exc, headers)
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    async def models(self, request: Request) -> Response:
        return JSONResponse(models_payload(int(time.time())))

    async def chat_completions(self, request: Request) -> Response:
        try:
            chat = parse_chat_request(await _json_body(request))
            context = context_for(self.service.settings.deployment, chat.decoding)
            run = self.service.start(chat.question, context)
        except Exception as exc:  # bad input (400, 404), no free slot (429), or a bug (500)
            return self._error_response(exc)
        headers = {THREAD_HEADER: run.thread_id}
        stamp = Stamp(run.thread_id, int(time.time()))
        streaming = False
        try:
            if chat.stream:
                # The first stage comes before the response starts, so that a run that
                # fails at once still gets its status (502, 504) rather than a 200.
                first = await until_disconnected(request, run.next())
                streaming = True
                return self._event_stream(self._chunks(run, chat, first, stamp), headers)
            events, output = await until_disconnected(request, run.collect())
            return JSONResponse(completion_payload(output, events, stamp), headers=headers)
        except ClientDisconnected:
            return Response(status_code=CLIENT_CLOSED_STATUS)
        except Exception as exc:
            return self._error_response(exc, headers)
        finally:
            if not streaming:
                run.cancel()

    def _event_stream(self, events: AsyncIterator[str], headers: dict[str, str]) -> EventSourceResponse:
        """The events (each one's data) as server-sent events, as OpenAI frames them."""
        return EventSourceResponse(
            events,
            headers=headers,
            ping=self.ping_interval_s,
            sep="\n",  # OpenAI's framing: `data: ...` and a blank line, "\n\n" (sse-starlette's default is CRLF)
            # On the server's exit signal sse-starlette would cut every stream at once; instead
            # a stream has the server's whole shutdown, in which its run ends (`sift serve`
            # cancels it after its grace period) and it is answered: an error event, [DONE].
            shutdown_grace_period=SHUTDOWN_TIMEOUT_S,
        )

    async def _chunks(self, run: Run, chat: ChatRequest, first: RunItem, stamp: Stamp) -> AsyncIterator[str]:
        """The stream: each stage's tokens as reasoning while they are generated (`live`)
        and its event when it is in, then the solution, the finish (with the `sift`
        object), the usage if asked for, and [DONE]."""
        try:
            yield event_data(chunk_payload({"role": "assistant", "content": ""}, stamp))
            events, item, live = [], first, LiveText()
            while not isinstance(item, RunFinished):
                if isinstance(item, StageText):
                    reasoning = live.add(item)
                else:
                    events.append(item)
                    reasoning = live.line(format_event(item))
                if reasoning:
                    yield event_data(chunk_payload({"reasoning_content": reasoning}, stamp))
                item = await run.next()
            if rest := live.flush():
                yield event_data(chunk_payload({"reasoning_content": rest}, stamp))
            output = item.output
            yield event_data(chunk_payload({"content": output.get("response") or ""}, stamp))
            extension = sift_extension(output, run.thread_id)
            yield event_data(chunk_payload({}, stamp, finish=finish_reason(events), sift=extension))
            if chat.include_usage:
                yield event_data(usage_chunk_payload(output.get("usage") or {}, stamp))
            yield DONE
        except Exception as exc:  # the status is sent: the error goes as an event, as OpenAI's does
            yield event_data(self._error(exc, {THREAD_HEADER: run.thread_id}).body())
            yield DONE  # the stream still ends as every stream does
        finally:
            run.cancel()


def create_app(service: SiftService, *, ping_interval_s: float = PING_INTERVAL_S) -> Starlette:
    """The OpenAI-compatible app over `service`; its lifespan opens the service.
    `ping_interval_s`: seconds between keep-alive pings on an idle stream."""
    routes = OpenAIRoutes(service, ping_interval_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with service.opened():
            yield

    return Starlette(
        routes=[
            Route("/v1/models", routes.models, methods=["GET"]),
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            # This deployment's own checkpoint store, read-only; no result sets (no files
            # a client could name).
            Mount(VIEW_PREFIX, app=create_view_app(saver=lambda: service.checkpointer)),
        ],
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """The app configured from the environment: the LangGraph server's custom HTTP app.
    Its middleware guards the server's own routes too (see `guard`)."""
    app = create_app(SiftService(settings_from_env()))
    app.add_middleware(DeploymentSettingsGuard)
    return app
