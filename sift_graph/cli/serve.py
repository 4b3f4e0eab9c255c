"""`sift serve`: SIFT behind an OpenAI-compatible API (the server is `sift_graph.serve`).

    sift serve --model openai:qwen2.5-7b --base-url http://gpu-box:8000/v1 --port 8000
    curl http://127.0.0.1:8000/v1/chat/completions -d '{"model": "sift", "messages": [...]}'

The model is loaded before the server listens; a bad setting or a checkpoint store that
cannot be opened exits with status 2 and one line. Ctrl-C stops the server: runs still
going are cancelled and stay resumable with `sift solve --resume THREAD`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from typing import Any

import uvicorn

from sift_graph.checkpoints import default_checkpoints, describe_checkpoints
from sift_graph.cli.common import (
    UsageError,
    add_model_arguments,
    context_from_args,
    load_model_quietly,
    quiet_transformers,
)
from sift_graph.deployment import DEFAULT_MAX_TOKENS_LIMIT, OverLimit, RunLimits
from sift_graph.serve import MODEL_ID, ServeSettings, SiftService, StoreUnavailable, create_app
from sift_graph.serve.settings import DEFAULT_MAX_CONCURRENCY, GRACEFUL_SHUTDOWN_S, SHUTDOWN_TIMEOUT_S
from sift_graph.serve.store import MEMORY_THREADS


class SiftServer(uvicorn.Server):
    """uvicorn's server, whose shutdown (Ctrl-C) gives open requests their grace period,
    then cancels their runs, so that each is answered (503 `run_cancelled` with its thread
    id, or a stream's error event and `[DONE]`) before uvicorn drops what is left."""

    def __init__(self, config: uvicorn.Config, service: SiftService) -> None:
        super().__init__(config)
        self.service = service

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        cancelling = asyncio.get_running_loop().call_later(GRACEFUL_SHUTDOWN_S, self.service.cancel_runs)
        try:
            await super().shutdown(sockets)
        finally:
            cancelling.cancel()


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound here so that a busy port is our one line, not uvicorn's log."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from exc


def add_serve_command(commands: Any) -> None:
    parser = commands.add_parser("serve", help="serve SIFT behind an OpenAI-compatible API (/v1/chat/completions)")
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="where each request's run is kept: a SQLite file, a postgresql:// URL or 'memory' "
        f"(the last {MEMORY_THREADS} threads written; older ones are forgotten) "
        "(default $SIFT_CHECKPOINTS, else .sift/checkpoints.sqlite, as for sift solve)",
    )
    parser.add_argument(
        "--max-tokens-limit",
        type=int,
        default=DEFAULT_MAX_TOKENS_LIMIT,
        help=f"the largest max_tokens a request may ask for (default {DEFAULT_MAX_TOKENS_LIMIT}); "
        "the model and its server are the flags' only, never a request's",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=DEFAULT_MAX_CONCURRENCY,
        help=f"requests run at once; more are answered 429 (default {DEFAULT_MAX_CONCURRENCY})",
    )
    parser.set_defaults(run=serve_command)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected 0 to 65535, got {args.port}")
    try:
        return ServeSettings(
            context=context_from_args(args),
            checkpoints=args.checkpoints or default_checkpoints(),
            max_concurrency=args.max_concurrency,
            limits=RunLimits(max_tokens=args.max_tokens_limit),
        )
    except ValueError as exc:
        hint = " (--max-tokens-limit raises the limit)" if isinstance(exc, OverLimit) else ""
        raise UsageError(f"{exc}{hint}") from exc


def serve_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    quiet_transformers()
    started = time.monotonic()
    print(f"model: {settings.context.model} (loading...)", file=sys.stderr, flush=True)
    load_model_quietly(settings.context)  # kept per process: every run finds it loaded
    print(f"model ready in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    asyncio.run(serve(settings, args.host, args.port))
    return 0


async def serve(settings: ServeSettings, host: str, port: int) -> None:
    """Open the store and the port (a failure is one line), then serve until stopped."""
    service = SiftService(settings)
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(service.opened())
        except StoreUnavailable as exc:
            raise UsageError(str(exc)) from exc
        listening = stack.enter_context(listening_socket(host, port))
        # lifespan off: the app's lifespan would open the store again, and it is open.
        config = uvicorn.Config(
            create_app(service),
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        )
        print(
            f"serving model {MODEL_ID!r} at http://{host}:{listening.getsockname()[1]}/v1 (checkpoints: "
            f"{describe_checkpoints(settings.checkpoints)}, at most {settings.max_concurrency} requests at once)",
            file=sys.stderr,
            flush=True,
        )
        try:
            await SiftServer(config, service).serve(sockets=[listening])
        except SystemExit as exc:  # uvicorn exits when it cannot start, having said why
            raise UsageError(f"cannot serve on {host}:{port}") from exc
