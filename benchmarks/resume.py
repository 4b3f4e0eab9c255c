"""Resume at token granularity (issue 22): how much of a long call an interrupt costs,
and what streaming and saving partial replies cost a call.

1. One 1,000-token call to a streaming OpenAI-compatible server on loopback (one word
   a token, `TOKEN_S` apart, continuing a trailing assistant message as llama.cpp's
   server does) is interrupted once 25%, 50% or 90% of it has streamed, then made again
   with the partial reply saved. Counted by the server: tokens generated after the
   interrupt, and of those, tokens generated a second time. `restart` is the call as it
   was before partials (every token again); `prefill` continues the saved text.
2. The cost per call, in process: a model that streams a reply of `COST_TOKENS` tokens
   through `call_model`, without partials and with them saved to SQLite, against the
   same model answering whole (no stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from sift_graph.calls import acall_model, call_model
from sift_graph.context import SiftContext
from sift_graph.partials import SAVE_EVERY_TOKENS

CALL_TOKENS = 1000
TOKEN_S = 0.001
FRACTIONS = (0.25, 0.5, 0.9)
COST_TOKENS = 200
WORDS = [f"w{number} " for number in range(CALL_TOKENS)]


class StreamingServer:
    """A one-reply streaming chat server in a thread of its own; counts tokens sent."""

    def __init__(self) -> None:
        self.generated = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> StreamingServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]) if b"ength:" in head else 0
            body = json.loads(await reader.readexactly(length)) if length else {}
            if head.startswith(b"GET"):
                data = json.dumps({"object": "list", "data": [{"id": "bench", "owned_by": "llamacpp"}]}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
                )
                writer.write(data)
                await writer.drain()
                return
            last = body["messages"][-1]
            given = last["content"] if last["role"] == "assistant" else ""
            start = len(given.split())
            words = WORDS[start : start + int(body.get("max_tokens") or CALL_TOKENS)]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            for word in words:
                self.generated += 1
                event = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                writer.write(f"data: {json.dumps(event)}\n\n".encode())
                await writer.drain()
                await asyncio.sleep(TOKEN_S)
            finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            usage = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": len(words)}}
            writer.write(f"data: {json.dumps(finish)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


class StopAfter(AsyncCallbackHandler):
    """Cancels `task` once `tokens` tokens have streamed in."""

    def __init__(self, tokens: int) -> None:
        self.tokens, self.seen = tokens, 0
        self.task: asyncio.Task[Any] | None = None

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.seen += 1 if token else 0
        if self.seen >= self.tokens and self.task is not None:
            self.task.cancel()


@dataclass(frozen=True)
class ResumeResult:
    fraction: float
    continuation: str
    after_interrupt: int
    """Tokens the server generated for the call once it was made again."""
    again: int
    """Of the tokens generated before the interrupt, those generated a second time."""


async def interrupted_call(server: StreamingServer, fraction: float, continuation: str, folder: Path) -> ResumeResult:
    context = SiftContext(
        model="openai:bench",
        base_url=f"http://127.0.0.1:{server.port}/v1",
        max_tokens=CALL_TOKENS + 10,
        partials=str(folder / f"{continuation}-{fraction}.sqlite"),
        continuation=continuation,  # type: ignore[arg-type]
    )
    from sift_graph.models import resolve_model

    model = resolve_model(context.model, context.connection)
    stop = StopAfter(int(CALL_TOKENS * fraction))
    stop.task = asyncio.ensure_future(acall_model(model, "direct", "Solve it.", context, {"callbacks": [stop]}))
    with contextlib.suppress(asyncio.CancelledError):
        await stop.task
    await asyncio.sleep(0.05)  # the server sees the hang-up at its next token
    before = server.generated
    reply = await acall_model(model, "direct", "Solve it.", context, None)
    assert reply.text == "".join(WORDS).strip(), "the resumed call's reply is not the whole reply"
    after = server.generated - before
    server.generated = 0
    return ResumeResult(fraction, continuation, after, before - (CALL_TOKENS - after))


def run_resume() -> list[ResumeResult]:
    results = []
    with StreamingServer() as server, tempfile.TemporaryDirectory() as folder:
        for fraction in FRACTIONS:
            for continuation in ("restart", "prefill"):
                results.append(asyncio.run(interrupted_call(server, fraction, continuation, Path(folder))))
    return results


# --- the cost per call -----------------------------------------------------------------------


class WholeModel(BaseChatModel):
    """Answers COST_TOKENS words at once."""

    @property
    def _llm_type(self) -> str:
        return "bench-whole"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        message = AIMessage(content="".join(WORDS[:COST_TOKENS]), response_metadata={"finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=message)])


class StreamingModel(WholeModel):
    """The same words, streamed one a chunk (as our models stream, `generates_by_streaming`)."""

    @property
    def _llm_type(self) -> str:
        return "bench-streaming"

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        from sift_graph.partials import current_partial

        call = current_partial()
        for word in WORDS[:COST_TOKENS]:
            if call is not None:
                call.record(word)
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        yield ChatGenerationChunk(message=AIMessageChunk(content=""), generation_info={"finish_reason": "stop"})

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(*args, **kwargs):
            yield chunk


def cost_ms(model: BaseChatModel, context: SiftContext, calls: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for number in range(calls):
            call_model(model, "direct", f"question {number}", context, None)
        samples.append((time.perf_counter() - started) / calls * 1000)
    return statistics.median(samples)


def run_cost(calls: int = 100, repeats: int = 5) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        plain = SiftContext(cache="off")
        saved = SiftContext(cache="off", partials=str(Path(folder) / "partials.sqlite"))
        return {
            "whole": cost_ms(WholeModel(), plain, calls, repeats),
            "streamed": cost_ms(StreamingModel(), plain, calls, repeats),
            "streamed + partials": cost_ms(StreamingModel(), saved, calls, repeats),
        }


# --- the seam: a partial's text re-tokenized --------------------------------------------------


@dataclass(frozen=True)
class SeamResult:
    cuts: int
    differing: int
    """Cuts whose text re-tokenizes to other tokens than those generated."""
    replies: int
    replies_with_one: int


def measure_seams(questions: int = 20, tokens: int = 64) -> SeamResult:
    """A server continues a partial from its text, tokenized anew: where that differs from
    the tokens the model generated, a greedy continuation can differ from the uninterrupted
    reply. Greedy replies of the embedded model (fp32) to GSM8K questions, each cut after
    every token from 8 to `tokens` - 8."""
    from langchain_core.messages import HumanMessage

    from sift_graph.evaluation.datasets import load_dataset
    from sift_graph.models import resolve_model
    from sift_graph.models.specs import LoadOptions
    from sift_graph.prompts import direct_prompt

    model: Any = resolve_model("default", options=LoadOptions(dtype="float32"))
    asked = [question.question for question in load_dataset("gsm8k", limit=questions)[1]]
    requests = [model._request([HumanMessage(direct_prompt(q))], None, {"max_tokens": tokens}) for q in asked]
    replies = [future.result().tokens for future in [model.scheduler.submit(r) for r in requests]]
    cuts = differing = with_one = 0
    for reply in replies:
        seams = 0
        for cut in range(8, min(len(reply), tokens - 7)):
            text = model.tokenizer.decode(reply[:cut], skip_special_tokens=True)
            seams += model.tokenizer(text, add_special_tokens=False)["input_ids"] != reply[:cut]
            cuts += 1
        differing += seams
        with_one += seams > 0
    return SeamResult(cuts, differing, len(replies), with_one)


__all__ = ["CALL_TOKENS", "SAVE_EVERY_TOKENS", "measure_seams", "run_cost", "run_resume"]
