"""The runs behind the HTTP routes: each request's SIFT run in its own task, at most
`max_concurrency` at once, checkpointed under its own thread.

A run's task streams the graph (`run_items`, the loop `sift solve` shares; its two
predictions are two concurrent requests) and queues each stage's tokens as they are
generated and each stage event as it happens, then the output. The request
handler reads that queue; cancelling the task (the client hung up) cancels the model
calls in flight, and the finished steps stay in the checkpoint store, so
`sift solve --resume THREAD` can finish the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from sift_graph.context import SiftContext
from sift_graph.events import StageEvent
from sift_graph.graph import build_sift_graph
from sift_graph.live import StageText
from sift_graph.locks import run_lock
from sift_graph.run_items import RunFinished as RunFinished  # public here before solve shared it
from sift_graph.run_items import RunItem as RunItem
from sift_graph.run_items import run_items
from sift_graph.runs import new_thread_id, run_config
from sift_graph.serve.errors import RunCancelled, ServerBusy
from sift_graph.serve.settings import ServeSettings
from sift_graph.serve.store import open_store


@contextlib.asynccontextmanager
async def held_off_the_loop(lock: AbstractContextManager[Any]) -> AsyncIterator[None]:
    """Hold a blocking lock (a file lock, a PostgreSQL session), taken and freed in a
    worker thread so that no other request waits on it."""
    taking = asyncio.ensure_future(asyncio.to_thread(lock.__enter__))
    try:
        await asyncio.shield(taking)
    except asyncio.CancelledError:
        # Cancelled (the client hung up) while the worker takes it: once it is taken,
        # free it, or it would stay held for as long as the server runs.
        await asyncio.wait({taking})
        if taking.exception() is None:
            await asyncio.to_thread(lock.__exit__, None, None, None)
        raise
    try:
        yield
    finally:
        await asyncio.to_thread(lock.__exit__, None, None, None)


class Run:
    """One request's SIFT run, going on in its own task: stage events, then the output."""

    def __init__(
        self, thread_id: str, items: AsyncIterator[RunItem], lock: AbstractContextManager[Any] | None = None
    ) -> None:
        self.thread_id = thread_id
        self._items: asyncio.Queue[RunItem | BaseException] = asyncio.Queue()
        produce = self._produce(items, lock or contextlib.nullcontext())
        self.task = asyncio.get_running_loop().create_task(produce, name=f"sift-run-{thread_id}")

    async def _produce(self, items: AsyncIterator[RunItem], lock: AbstractContextManager[Any]) -> None:
        try:
            async with held_off_the_loop(lock):
                async for item in items:  # `run_items`: stage events and texts, then the output
                    self._items.put_nowait(item)
        except asyncio.CancelledError:
            self._items.put_nowait(RunCancelled(f"run {self.thread_id} was cancelled"))
            raise
        except Exception as exc:  # the reader raises it where it can answer for it
            self._items.put_nowait(exc)

    async def next(self) -> RunItem:
        """The next stage text or event, or the output at the end; the run's error if it failed."""
        item = await self._items.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def collect(self) -> tuple[list[StageEvent], dict[str, Any]]:
        """Every stage event and the output, once the run is over."""
        events: list[StageEvent] = []
        while not isinstance(item := await self.next(), RunFinished):
            if not isinstance(item, StageText):
                events.append(item)
        return events, item.output

    def cancel(self) -> None:
        """Stop the run and its model calls (nothing happens once it is over)."""
        self.task.cancel()


class SiftService:
    """The SIFT graph on the configured checkpoint store, and the runs it has going."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._graph: CompiledStateGraph[Any, Any, Any, Any] | None = None
        self._runs: set[asyncio.Task[None]] = set()

    @property
    def checkpointer(self) -> BaseCheckpointSaver[str] | None:
        """The open checkpoint store (None while the service is not open): what the
        read-only pages under /view show."""
        saver = self._graph.checkpointer if self._graph is not None else None
        return saver if isinstance(saver, BaseCheckpointSaver) else None

    @property
    def active(self) -> int:
        """Runs in progress."""
        return len(self._runs)

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[SiftService]:
        """The service with its store open; runs still going at the end are cancelled
        (and stay resumable) before the store closes. StoreUnavailable if it cannot open."""
        async with open_store(self.settings.checkpoints) as saver:
            self._graph = build_sift_graph(retry_policy=self.settings.retry_policy).compile(checkpointer=saver)
            try:
                yield self
            finally:
                self.cancel_runs()
                await asyncio.gather(*self._runs, return_exceptions=True)
                self._graph = None

    def cancel_runs(self) -> None:
        """Cancel every run in progress: each request still open is answered that its run
        was cancelled (503 `run_cancelled`), and the run stays resumable."""
        for task in list(self._runs):
            task.cancel()

    def start(self, question: str, context: SiftContext) -> Run:
        """Start a run in a new thread; ServerBusy when `max_concurrency` runs are going."""
        if self._graph is None:
            raise RuntimeError("SiftService: not open (use `async with service.opened()`)")
        if self.active >= self.settings.max_concurrency:
            raise ServerBusy(self.settings.max_concurrency)
        thread_id = new_thread_id()
        stream = run_items(self._graph, {"question": question}, run_config(thread_id, context), context, live=True)
        # The run's lock, as `sift solve` takes it: no `--resume` of this thread meanwhile.
        run = Run(thread_id, stream, run_lock(self.settings.checkpoints, thread_id))
        self._runs.add(run.task)
        run.task.add_done_callback(self._runs.discard)
        return run
