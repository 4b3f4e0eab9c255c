"""What our chat models share to generate through their streaming interface.

A model whose `_generate` is built on its `_stream` (`result_of_stream`) reports every
chunk to its callbacks whether or not a caller asked to stream: LangGraph's
`stream_mode="messages"`, a LangChain tracer and the CLI see tokens as they come, and
the call's cache key is the same as it was for a non-streamed call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from sift_graph.partials import Partial, PartialCall


def result_of_stream(chunks: Iterable[ChatGenerationChunk], run_manager: CallbackManagerForLLMRun | None) -> ChatResult:
    """The whole reply of a stream, each chunk reported to the run's callbacks on the way."""

    def reported() -> Iterable[ChatGenerationChunk]:
        for chunk in chunks:
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    return generate_from_stream(iter(reported()))


async def aresult_of_stream(
    chunks: AsyncIterator[ChatGenerationChunk], run_manager: AsyncCallbackManagerForLLMRun | None
) -> ChatResult:
    async def reported() -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in chunks:
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    return await agenerate_from_stream(reported())


def text_chunk(text: str = "", reasoning: str | None = None, **metadata: Any) -> ChatGenerationChunk:
    """A chunk of answer text, of reasoning (`reasoning_content`, kept apart as in a whole
    reply), or of metadata only (`finish_reason`, `usage_metadata`)."""
    usage = metadata.pop("usage_metadata", None)
    message = AIMessageChunk(
        content=text,
        additional_kwargs={"reasoning_content": reasoning} if reasoning else {},
        usage_metadata=usage,
    )
    return ChatGenerationChunk(message=message, generation_info=metadata or None)


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}


def continued_chunk(call: PartialCall, partial: Partial, text: str) -> ChatGenerationChunk:
    """The first chunk of a continued call: the text an interrupted try had generated
    (so the reply, and a stream's reader, has it all). `call` goes on from there."""
    call.continue_from(partial)
    return text_chunk(text)


class IncrementalDecoder:
    """Token ids -> new text, one token at a time. Each step decodes a few tokens of
    context before the new ones and keeps what they add (a token may read differently
    after another, and a character may span tokens: such text waits for the rest)."""

    CONTEXT_TOKENS = 4
    """Tokens of `generated` decoded again as context for the first new one."""

    def __init__(self, decode: Callable[[list[int]], str], generated: list[int] | None = None) -> None:
        self._decode = decode
        self.tokens: list[int] = list(generated or [])
        """Every token of the reply (those given as `generated` first)."""
        self._read = len(self.tokens)
        self._prefix = max(self._read - self.CONTEXT_TOKENS, 0)
        self.emitted = decode(self.tokens) if self.tokens else ""

    def push(self, token: int) -> str:
        self.tokens.append(token)
        before = self._decode(self.tokens[self._prefix : self._read])
        after = self._decode(self.tokens[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        new = after[len(before) :]
        self._prefix, self._read = self._read, len(self.tokens)
        self.emitted += new
        return new

    def rest(self, full_text: str) -> str:
        """What `full_text` (the whole reply, decoded at once) adds to what was emitted."""
        return full_text[len(self.emitted) :] if full_text.startswith(self.emitted) else ""
