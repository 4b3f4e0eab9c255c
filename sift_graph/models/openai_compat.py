"""Models behind any OpenAI-compatible server (the `openai:` spec): vLLM, SGLang, Ollama,
llama.cpp's server, OpenAI itself."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar, Literal
from weakref import WeakKeyDictionary

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr, SecretStr

from sift_graph.models.openai_request import chat_completion_payload, chat_completion_request, takes_lean_path
from sift_graph.models.openai_stream import (
    StreamReader,
    continuation_body,
    server_continuation,
    tokens_left,
    uncounted_body,
    usage_of_completion,
    usage_probe_body,
)
from sift_graph.models.openai_transport import Transport
from sift_graph.models.streaming import aresult_of_stream, continued_chunk, result_of_stream, text_chunk, usage
from sift_graph.partials import Continuation, current_partial

# One usage probe at a time in a process (see `usage_probe_body`): a server that ends a
# stream when another request comes must see the probe alone. A probe is one token, so
# calls that wait for it wait a moment, once per model.
_PROBE_LOCK = threading.Lock()
_probe_locks_by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


def _async_probe_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _probe_locks_by_loop.get(loop)
    if lock is None:
        lock = _probe_locks_by_loop[loop] = asyncio.Lock()
    return lock


class OpenAICompatibleChatModel(ChatOpenAI):
    """`ChatOpenAI` for any OpenAI-compatible server.

    A plain chat completion (every call SIFT makes) takes a lean path, below, which differs
    from the stock client in two more ways: the token limit goes out under the name the
    server understands (`token_limit_param`), and a reasoning model's separate
    `reasoning_content` (vLLM, SGLang, DeepSeek) is kept in `additional_kwargs`.

    Any other call (tools, structured output, several choices, log probabilities, response
    headers, the Responses API: see `openai_request`) is the stock `ChatOpenAI`'s, through its
    documented extension points (`_generate`, `_stream`, ...), and behaves exactly as
    `ChatOpenAI` does: it sends the token limit as `max_completion_tokens` and drops
    `reasoning_content`. Neither can be changed there without ChatOpenAI's private request
    and result hooks, which this class does not use; a server that knows only `max_tokens`
    can be given it through `extra_body` on such calls. A model that only the Responses API
    serves needs `use_responses_api=True` (the stock client guesses it from the name).
    """

    token_limit_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    generates_by_streaming: ClassVar[bool] = True  # every call streams (see `models.streaming`)

    _server_continuation: Continuation | None = PrivateAttr(default=None)  # once asked (`auto`)
    # Whether the server's streams say what a reply cost (None: not yet asked). A one-token
    # probe asks before the model's first stream; a server that ignores
    # `stream_options.include_usage` (llama-cpp-python's) is asked whole from then on, and
    # a reply whose stream is uncounted all the same is asked again whole: token
    # accounting is never guessed.
    _streams_count_usage: bool | None = PrivateAttr(default=None)
    _clients_by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = PrivateAttr(default_factory=WeakKeyDictionary)

    def _async_client(self) -> Any:
        """An async client whose connections belong to the running event loop. The stock
        one is shared by every loop in the process, and a connection opened under one
        `asyncio.run` breaks the next ("Event loop is closed"): a script that calls
        `asyncio.run` twice, or a process that runs `sift solve` twice. A client of the
        user's own (`http_async_client`) is used as given."""
        if self.http_async_client is not None:
            return self.root_async_client
        loop = asyncio.get_running_loop()
        client = self._clients_by_loop.get(loop)
        if client is None:
            client = self._clients_by_loop[loop] = self.root_async_client.copy(
                http_client=openai.DefaultAsyncHttpxClient()
            )
        return client

    # The lean path. For a plain chat completion the stock client walks the request
    # through the SDK's typed-params transform, parses the reply into pydantic models
    # turned straight back into dicts, and on the async path hands that to the default
    # thread pool: about 1.3 ms of CPU per call, and the pool caps a batch's concurrency.
    # The SDK's documented raw `post` sends the same JSON body (with `stream: true`) and
    # yields each event as a dict, through the same HTTP client, timeouts (per read: a
    # long reply streams while tokens keep coming) and error mapping (without response
    # headers: LangSmith gateway metadata read from them is not kept). A whole JSON
    # completion instead of events is read as one event. Anything else goes the stock way.
    def _key(self) -> str | None:
        key = self.openai_api_key  # a SecretStr as we build it (ChatOpenAI also takes a callable)
        return key.get_secret_value() if isinstance(key, SecretStr) else None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if not takes_lean_path(self, kwargs):
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        return result_of_stream(self._stream(messages, stop=stop, **kwargs), run_manager)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if not takes_lean_path(self, kwargs):
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        return await aresult_of_stream(self._astream(messages, stop=stop, **kwargs), run_manager)

    # Every plain chat completion streams (`result_of_stream`): through the SDK's raw
    # `post`, whose events are plain dicts. A call that finds the partial reply of an
    # interrupted try (`partials.current_partial`) continues it when the server can.
    def _prepared(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any], how: Continuation
    ) -> tuple[dict[str, Any], dict[str, Any], StreamReader, list[ChatGenerationChunk]]:
        """(the request's body, its options, its reader, the chunks that come before its
        events: the partial reply it continues, and its end if that used up the limit)."""
        payload = chat_completion_payload(self, messages, stop, kwargs, self.token_limit_param)
        body, options = chat_completion_request(payload)
        body.update(stream=True, stream_options={"include_usage": True})
        call = current_partial()
        if call is None or call.found is None or how == "restart":
            return body, options, StreamReader(), []
        found = call.found
        body = continuation_body(body, found, how, self.token_limit_param)
        lead = [continued_chunk(call, found, found.text)]
        if (left := tokens_left(body, self.token_limit_param)) is not None and left < 1:
            lead.append(text_chunk(finish_reason="length", usage_metadata=usage(0, found.tokens)))
        return body, options, StreamReader(found.tokens), lead

    def _continuation(self) -> Continuation:
        """How this call goes on from the partial reply it found ("restart": none found).
        `auto` asks the server once what it is (see `openai_stream`)."""
        call = current_partial()
        if call is None or call.found is None:
            return "restart"
        if call.continuation != "auto":
            return call.continuation
        if self._server_continuation is None:
            official = self.root_client.base_url.host == "api.openai.com"
            try:
                listing = None if official else self.root_client.get("/models", cast_to=dict)
            except openai.OpenAIError:
                listing = None
            self._server_continuation = server_continuation(listing)
        return self._server_continuation

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if not takes_lean_path(self, kwargs):
            yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)
            return
        body, options, reader, lead = self._prepared(messages, stop, kwargs, self._continuation())
        yield from lead
        if reader.ended_before(lead):
            return
        transport = Transport(self.root_client, self._key())
        if self._streams_count_usage is None:
            with _PROBE_LOCK:
                if self._streams_count_usage is None:
                    probe = StreamReader(records=False)
                    for _ in transport.chunks(usage_probe_body(body, self.token_limit_param), options, probe):
                        pass
                    self._streams_count_usage = probe.counted
        if not self._streams_count_usage:
            body = uncounted_body(body)
        yield from transport.chunks(body, options, reader)
        if not reader.counted and body.get("stream"):
            self._streams_count_usage = False
            with transport.errors_mapped():
                whole = self.root_client.post(
                    "/chat/completions", body=uncounted_body(body), options=options, cast_to=dict
                )
            yield usage_of_completion(transport.checked(whole), reader.continued_from)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if not takes_lean_path(self, kwargs):
            async for stock_chunk in super()._astream(messages, stop=stop, run_manager=run_manager, **kwargs):
                yield stock_chunk
            return
        call = current_partial()  # resuming (rare): a server's kind is asked once, off the loop
        how = await asyncio.to_thread(self._continuation) if call is not None and call.found else "restart"
        body, options, reader, lead = self._prepared(messages, stop, kwargs, how)
        for leading in lead:
            yield leading
        if reader.ended_before(lead):
            return
        transport = Transport(self._async_client(), self._key())
        if self._streams_count_usage is None:
            async with _async_probe_lock():
                if self._streams_count_usage is None:
                    probe = StreamReader(records=False)
                    async for _ in transport.achunks(usage_probe_body(body, self.token_limit_param), options, probe):
                        pass
                    self._streams_count_usage = probe.counted
        if not self._streams_count_usage:
            body = uncounted_body(body)
        async for chunk in transport.achunks(body, options, reader):
            yield chunk
        if not reader.counted and body.get("stream"):
            self._streams_count_usage = False
            with transport.errors_mapped():
                whole = await transport.client.post(
                    "/chat/completions", body=uncounted_body(body), options=options, cast_to=dict
                )
            yield usage_of_completion(transport.checked(whole), reader.continued_from)
