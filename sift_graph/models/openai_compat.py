"""Models behind any OpenAI-compatible server (the `openai:` spec): vLLM, SGLang, Ollama,
llama.cpp's server, OpenAI itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal
from weakref import WeakKeyDictionary

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr, SecretStr

from sift_graph.faults import MalformedReplyError
from sift_graph.models.openai_errors import (
    chat_completion_problem,
    key_kept_out_of_errors,
    openai_errors_mapped,
    stream_errors_mapped,
)
from sift_graph.models.openai_request import chat_completion_payload, chat_completion_request, takes_lean_path
from sift_graph.models.openai_stream import (
    StreamReader,
    continuation_body,
    is_event_stream,
    server_continuation,
    tokens_left,
    uncounted_body,
    usage_of_completion,
    whole_completion,
)
from sift_graph.models.streaming import aresult_of_stream, continued_chunk, result_of_stream, text_chunk, usage
from sift_graph.partials import Continuation, current_partial

_Events = openai.Stream[dict[str, Any]]
_AsyncEvents = openai.AsyncStream[dict[str, Any]]


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
    # Whether the server's streams say what a reply cost. A server that ignores
    # `stream_options.include_usage` (llama-cpp-python's) is found out by its first reply,
    # which is then asked again whole to be counted (once per model), and is asked whole
    # from then on: token accounting is never guessed.
    _streams_count_usage: bool = PrivateAttr(default=True)
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
        if not self._streams_count_usage:
            body = uncounted_body(body)
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
        with key_kept_out_of_errors(self._key()), openai_errors_mapped(), self._malformed_replies_named():
            events = self.root_client.post(
                "/chat/completions", body=body, options=options, cast_to=dict, stream=True, stream_cls=_Events
            )
            try:
                with stream_errors_mapped(events.response.request):
                    for event in (
                        events if is_event_stream(events.response) else whole_completion(events.response, self._checked)
                    ):
                        if (chunk := reader.read(event)) is not None:
                            yield chunk
            finally:
                events.close()
        self._check_ended(reader, events.response.request)
        if not reader.counted and body.get("stream"):
            self._streams_count_usage = False
            with key_kept_out_of_errors(self._key()), openai_errors_mapped(), self._malformed_replies_named():
                whole = self.root_client.post(
                    "/chat/completions", body=uncounted_body(body), options=options, cast_to=dict
                )
            yield usage_of_completion(self._checked(whole), reader.continued_from)

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
        with key_kept_out_of_errors(self._key()), openai_errors_mapped(), self._malformed_replies_named():
            events = await self._async_client().post(
                "/chat/completions", body=body, options=options, cast_to=dict, stream=True, stream_cls=_AsyncEvents
            )
            try:
                with stream_errors_mapped(events.response.request):
                    if is_event_stream(events.response):
                        async for event in events:
                            if (chunk := reader.read(event)) is not None:
                                yield chunk
                    else:
                        await events.response.aread()
                        for event in whole_completion(events.response, self._checked):
                            if (chunk := reader.read(event)) is not None:
                                yield chunk
            finally:
                await events.close()
        self._check_ended(reader, events.response.request)
        if not reader.counted and body.get("stream"):
            self._streams_count_usage = False
            with key_kept_out_of_errors(self._key()), openai_errors_mapped(), self._malformed_replies_named():
                whole = await self._async_client().post(
                    "/chat/completions", body=uncounted_body(body), options=options, cast_to=dict
                )
            yield usage_of_completion(self._checked(whole), reader.continued_from)

    def _check_ended(self, reader: StreamReader, request: Any) -> None:
        """A stream with nothing in it is no reply; one that stopped before its finish
        reason broke off (a transient fault: the retry continues what was saved)."""
        if not reader.chunks:
            raise self._malformed("an empty stream")
        if not reader.ended:
            raise openai.APIConnectionError(message="the stream ended before the reply did", request=request)

    def _malformed(self, what: str) -> MalformedReplyError:
        return MalformedReplyError(
            f"the server at {self.root_client.base_url} returned {what}, not an OpenAI chat completion"
        )

    @contextmanager
    def _malformed_replies_named(self) -> Iterator[None]:
        try:
            yield
        except json.JSONDecodeError as exc:
            raise self._malformed(f"invalid JSON ({exc.msg} at character {exc.pos})") from exc

    def _checked(self, response: Any) -> dict[str, Any]:
        problem = chat_completion_problem(response)
        if problem is not None:
            raise self._malformed(problem)
        checked: dict[str, Any] = response
        return checked
