"""A local model's request, submitted to its scheduler and read token by token as
the scheduler decodes them, from a thread (sync) or a task (async).

Closing the iterator (a caller gone mid-stream, a cancelled task) cancels the request,
which frees its row before the next decoding step.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncGenerator, Generator
from concurrent.futures import Future

from sift_graph.models.scheduler import BatchScheduler, GenerationRequest, GenerationResult

WAIT_POLL_S = 0.25
"""How often a waiting sync caller checks that the process is not shutting down."""


def wait_for(future: Future[GenerationResult]) -> GenerationResult:
    """A sync caller's wait. If it is interrupted (Ctrl-C in the calling thread) or the
    process shuts down around it (Ctrl-C in the main thread while this is a worker
    thread), the request is cancelled, so its row is freed at once."""
    try:
        while True:
            try:
                return future.result(timeout=WAIT_POLL_S)
            except TimeoutError:
                if not threading.main_thread().is_alive():
                    future.cancel()
    except BaseException:
        future.cancel()
        raise


def _next_token(tokens: queue.SimpleQueue[int | None], future: Future[GenerationResult]) -> int | None:
    """The next token (None once the request is settled), waiting as `wait_for` does."""
    while True:
        try:
            return tokens.get(timeout=WAIT_POLL_S)
        except queue.Empty:
            if not threading.main_thread().is_alive():
                future.cancel()


def streamed_tokens(scheduler: BatchScheduler, request: GenerationRequest) -> Generator[int]:
    """Submit `request`; its tokens as they are decoded. At the end `request.future`
    holds the result (or the failure)."""
    tokens: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    request.on_token = tokens.put
    future = scheduler.submit(request)
    future.add_done_callback(lambda _: tokens.put(None))
    try:
        while (token := _next_token(tokens, future)) is not None:
            yield token
    finally:
        future.cancel()  # no-op once settled


async def astreamed_tokens(scheduler: BatchScheduler, request: GenerationRequest) -> AsyncGenerator[int]:
    """`streamed_tokens` for a task: the scheduler's thread hands each token to the loop."""
    loop = asyncio.get_running_loop()
    tokens: asyncio.Queue[int | None] = asyncio.Queue()

    def hand_over(token: int | None) -> None:  # on the scheduler's thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads any more
            loop.call_soon_threadsafe(tokens.put_nowait, token)

    request.on_token = hand_over
    future = scheduler.submit(request)
    future.add_done_callback(lambda _: hand_over(None))
    try:
        while (token := await tokens.get()) is not None:
            yield token
    finally:
        future.cancel()
