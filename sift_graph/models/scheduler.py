"""One scheduler per loaded local model: concurrent calls are generated together.

Callers (any thread, sync or async) submit a `GenerationRequest` and get a
`concurrent.futures.Future`. One worker thread owns the model: between two decoding
steps it admits whatever is waiting (its prompts prefilled, its rows joining the batch,
see `padded_batch`), runs one step for every row, picks each row's next token under the
row's own settings (`sampling`) and hands back every row that finished. A request
never waits for a batch to drain, and a finished one never waits for the others.

Isolation: cancelling a request's future (what `asyncio` does to a wrapped future when
its task is cancelled) frees its row before the next step. A request that cannot be
prefilled (a prompt longer than the model's context, memory running out on a long
prompt) fails alone: a group whose prefill fails is retried one request at a time. A
failed decoding step fails the rows in it and the scheduler goes on with an empty batch.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from sift_graph.models.decoding import is_sampled
from sift_graph.models.padded_batch import PaddedBatch, decode, keep_rows, merge, prefill, row_states
from sift_graph.models.prefix_cache import PrefixCache
from sift_graph.models.sampling import Decoding, next_tokens

FinishReason = Literal["stop", "length"]
TRACE_STEPS = 100_000
"""Decoding steps `BatchScheduler.batch_sizes` remembers (the oldest are dropped)."""


@dataclass(frozen=True)
class GenerationResult:
    tokens: list[int]
    """The new tokens, the end-of-sequence token included when one ended the reply."""
    finish_reason: FinishReason
    """"length" when cut at the token limit (or the model's context), else "stop"."""


@dataclass(eq=False)
class GenerationRequest:
    """One call: a tokenized prompt and its own limits and decoding settings."""

    prompt: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    """Strings that end the reply as soon as its text contains one."""
    seed: int | None = None
    """Seed of this call's own random generator (sampled calls): the same seed, the same reply."""
    on_token: Callable[[int], None] | None = field(default=None, repr=False)
    """Told each new token as it is decoded, on the worker thread (it must be quick and not raise)."""
    future: Future[GenerationResult] = field(default_factory=Future, repr=False)
    tokens: list[int] = field(default_factory=list, repr=False)

    generator: torch.Generator | None = field(default=None, repr=False)

    @property
    def decoding(self) -> Decoding:
        return (self.temperature, self.top_p)

    def own_generator(self, device: torch.device) -> torch.Generator | None:
        """The generator a seeded sampled call draws from (made on first use, on `device`)."""
        if self.generator is None and self.seed is not None and is_sampled(self.temperature):
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        return self.generator


_running: weakref.WeakSet[BatchScheduler] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Stop the workers before the interpreter tears down under them (a worker killed in
    the middle of a forward pass aborts the process instead of letting it exit)."""
    for scheduler in list(_running):
        scheduler.close()


def _settle(future: Future[GenerationResult], outcome: GenerationResult | BaseException) -> None:
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:  # cancelled meanwhile: nobody is waiting for it any more
        pass


class BatchScheduler:
    """Batches the concurrent requests of one model (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        *,
        eos_ids: Iterable[int],
        pad_id: int,
        decode_text: Callable[[list[int]], str],
        max_batch_size: int,
        prefill_group_size: int = 1,
        max_length: int | None = None,
    ) -> None:
        self._model = model
        self._eos_ids = frozenset(eos_ids)
        self._pad_id = pad_id
        self._decode_text = decode_text
        self.max_batch_size = max_batch_size
        self.prefill_group_size = prefill_group_size
        """Prompts prefilled in one forward pass at most. Prompts of different lengths are
        padded to the longest: worth it on a GPU, which has compute to spare, not on a CPU
        (there the padding of SIFT's prompts tripled the prefill's work)."""
        self._max_length = max_length
        self._waiting: deque[GenerationRequest] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        # Owned by the worker thread only.
        self._batch: PaddedBatch | None = None
        self._rows: list[GenerationRequest] = []
        self.prefixes = PrefixCache()
        self._reuses_prefixes = True  # until a model's cache turns out not to be plain full attention
        self._trace: deque[tuple[float, int]] = deque(maxlen=TRACE_STEPS)
        self._trace_lock = threading.Lock()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        if not request.prompt:
            raise ValueError("prompt: no tokens to generate from")
        if request.max_new_tokens < 1:
            raise ValueError(f"max_tokens: expected an integer >= 1, got {request.max_new_tokens}")
        with self._wake:
            if self._closed:
                raise RuntimeError("this model's scheduler is closed")
            self._waiting.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sift-local-batches", daemon=True)
                self._thread.start()
                _running.add(self)
            self._wake.notify()
        return request.future

    def batch_sizes(self, since: float = float("-inf")) -> list[tuple[float, int]]:
        """(time.monotonic(), rows) of each decoding step from `since` on: how the batch
        size moved."""
        with self._trace_lock:
            return [(at, rows) for at, rows in self._trace if at >= since]

    def close(self) -> None:
        """Stop the worker; requests not finished yet are cancelled."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # --- the worker thread --------------------------------------------------------------

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while (joining := self._take_waiting()) is not None:
                try:
                    for start in range(0, len(joining), self.prefill_group_size):
                        self._admit(joining[start : start + self.prefill_group_size])
                    if self._rows:
                        self._step()
                except Exception as error:  # a bug here must not leave callers waiting forever
                    self._fail_rows(error)
        for request in [*self._rows, *self._waiting]:
            request.future.cancel()
        self._batch, self._rows = None, []

    def _take_waiting(self) -> list[GenerationRequest] | None:
        """What may join before the next step (None once closed); blocks while idle."""
        with self._wake:
            while not self._waiting and not self._rows and not self._closed:
                self._wake.wait()
            if self._closed:
                return None
            room = self.max_batch_size - len(self._rows)
            if self._batch is not None and not self._batch.mergeable():
                room = 0
            joining: list[GenerationRequest] = []
            while self._waiting and len(joining) < room:
                request = self._waiting.popleft()
                if not request.future.cancelled():
                    joining.append(request)
            return joining

    def _prefill(self, group: list[GenerationRequest]) -> tuple[PaddedBatch, Any]:
        for request in group:
            if self._max_length is not None and len(request.prompt) >= self._max_length:
                raise ValueError(
                    f"prompt: {len(request.prompt)} tokens do not fit the model's context of {self._max_length}"
                )
        prompts = [request.prompt for request in group]
        reused = [self.prefixes.find(prompt) if self._reuses_prefixes else None for prompt in prompts]
        joining, logits = prefill(self._model, prompts, self._pad_id, reused)
        self._reuses_prefixes = joining.mergeable()
        if self._reuses_prefixes:
            for row, prompt in enumerate(prompts):
                self.prefixes.add(prompt, row_states(joining, row))
        return joining, logits

    def _admit(self, group: list[GenerationRequest]) -> None:
        try:
            joining, logits = self._prefill(group)
        except Exception as error:
            if len(group) == 1:
                _settle(group[0].future, error)
            else:  # find the culprit: the others must not fail with it
                for request in group:
                    self._admit([request])
            return
        joining.last = self._next_tokens(logits, group)
        self._batch = merge(self._batch, joining)
        self._rows.extend(group)
        self._advance(group, joining.last.tolist())

    def _step(self) -> None:
        live = [row for row, request in enumerate(self._rows) if not request.future.cancelled()]
        self._keep(live)
        if self._batch is None:
            return
        try:
            logits = decode(self._model, self._batch)
        except Exception as error:
            self._fail_rows(error)
            return
        self._batch.last = self._next_tokens(logits, self._rows)
        with self._trace_lock:
            self._trace.append((time.monotonic(), len(self._rows)))
        self._advance(self._rows, self._batch.last.tolist())

    @staticmethod
    def _next_tokens(logits: torch.Tensor, requests: list[GenerationRequest]) -> torch.Tensor:
        generators = [request.own_generator(logits.device) for request in requests]
        return next_tokens(logits, [request.decoding for request in requests], generators)

    def _advance(self, requests: list[GenerationRequest], tokens: list[int]) -> None:
        """Give each request its new token; settle and drop the ones that finished."""
        finished: dict[int, FinishReason] = {}
        for request, token in zip(requests, tokens, strict=True):
            request.tokens.append(token)
            if request.on_token is not None:
                request.on_token(token)
            reason = self._finish_reason(request)
            if reason is not None:
                finished[id(request)] = reason
        if not finished:
            return
        self._keep([row for row, request in enumerate(self._rows) if id(request) not in finished])
        for request in requests:
            if id(request) in finished:
                _settle(request.future, GenerationResult(list(request.tokens), finished[id(request)]))

    def _finish_reason(self, request: GenerationRequest) -> FinishReason | None:
        if request.tokens[-1] in self._eos_ids:
            return "stop"
        if request.stop:
            text = self._decode_text(request.tokens)
            if any(stop in text for stop in request.stop):
                return "stop"
        full = self._max_length is not None and len(request.prompt) + len(request.tokens) >= self._max_length
        if len(request.tokens) >= request.max_new_tokens or full:
            return "length"
        return None

    def _keep(self, rows: list[int]) -> None:
        if self._batch is not None and len(rows) < len(self._rows):
            self._batch = keep_rows(self._batch, rows)
            self._rows = [self._rows[row] for row in rows]

    def _fail_rows(self, error: BaseException) -> None:
        for request in self._rows:
            _settle(request.future, error)
        self._batch, self._rows = None, []
