"""Models behind any OpenAI-compatible server (the `openai:` spec): vLLM, SGLang, Ollama,
llama.cpp's server, OpenAI itself."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from weakref import WeakKeyDictionary

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr, SecretStr

from sift_graph.faults import MalformedReplyError
from sift_graph.models.specs import Connection, LoadOptions

_NO_KEY = "no-key"  # local servers ignore the key, but the client insists on one
# Request keys the OpenAI SDK takes as call options rather than as body fields.
_REQUEST_OPTION_KEYS = {"extra_headers": "headers", "extra_query": "params", "timeout": "timeout"}
# langchain-openai's own mappers of SDK errors to its error types (context overflow,
# auth, rate limit, ...). They are private to it, so they are looked up, not imported:
# if an upgrade moves them, the SDK's own errors are raised instead (still the types
# `faults` classifies), and tests/test_openai_faults.py fails loudly to say so.
ERROR_MAPPERS = ("_handle_openai_bad_request", "_handle_openai_api_error")


def load_spec_target(model_name: str, connection: Connection, options: LoadOptions | None = None) -> BaseChatModel:
    """The `openai:<model_name>` spec (load options are the server's business)."""
    return load_openai_model(model_name, connection)


def load_openai_model(model_name: str, connection: Connection) -> BaseChatModel:
    """A chat model behind an OpenAI-compatible server.

    The client's own retries are off (`max_retries=0`): the graph's RetryPolicy retries
    transient faults, and two retry layers would multiply each other.
    """
    base_url = connection.base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = connection.api_key or os.environ.get("OPENAI_API_KEY") or None
    if base_url is None and api_key is None:
        raise ValueError(
            "api_key: OpenAI itself needs an API key (--api-key or $OPENAI_API_KEY); "
            "for a local server give its base_url"
        )
    return OpenAICompatibleChatModel(
        model=model_name,
        base_url=base_url,
        api_key=SecretStr(api_key or _NO_KEY),
        timeout=connection.timeout,
        max_retries=0,
        # The official API has renamed the limit; servers such as llama.cpp's only know the old name.
        token_limit_param="max_completion_tokens" if base_url is None else "max_tokens",
    )


def chat_completion_request(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """ChatOpenAI's request payload -> (JSON body, request options) for the SDK's raw
    `post`: what `chat.completions.create(**payload)` would send."""
    body = dict(payload)
    extra_body = body.pop("extra_body", None) or {}
    options = {
        option: value for key, option in _REQUEST_OPTION_KEYS.items() if (value := body.pop(key, None)) is not None
    }
    body.update(extra_body)
    return body, options


def chat_completion_problem(response: Any) -> str | None:
    """What makes a parsed reply not an OpenAI chat completion, or None when it is one."""
    if isinstance(response, str):
        snippet = " ".join(response.split())[:60]
        return f"text ({snippet!r})" if snippet else "an empty body"
    if not isinstance(response, dict):
        return f"a JSON {type(response).__name__}"
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        return "a reply with no choices"
    if not all(isinstance(choice, dict) and isinstance(choice.get("message"), dict) for choice in choices):
        return "a choice with no message"
    return None


def stock_error_mappers() -> dict[str, Any]:
    """langchain-openai's error mappers that this version still has, by name."""
    from langchain_openai.chat_models import base as openai_base

    return {name: mapper for name in ERROR_MAPPERS if callable(mapper := getattr(openai_base, name, None))}


@contextmanager
def openai_errors_mapped() -> Iterator[None]:
    """Map SDK errors as the stock client does, so the lean path and the stock one fail alike."""
    import openai

    try:
        yield
    except openai.BadRequestError as error:
        mapper = stock_error_mappers().get("_handle_openai_bad_request")
        if mapper is not None:
            mapper(error)
        raise
    except openai.APIError as error:
        mapper = stock_error_mappers().get("_handle_openai_api_error")
        if mapper is not None:
            mapper(error)
        raise


def _redacted(value: Any, secret: str) -> Any:
    if isinstance(value, str):
        return value.replace(secret, "[redacted]")
    if isinstance(value, dict):
        return {key: _redacted(item, secret) for key, item in value.items()}
    return value


@contextmanager
def key_kept_out_of_errors(api_key: str | None) -> Iterator[None]:
    """Cut the key out of an error's text (its chain included). Some servers quote the key
    they refused, and the error would carry it on into logs, responses and the checkpoint
    store, where LangGraph records a failed step's error."""
    try:
        yield
    except Exception as error:
        chained: BaseException | None = error
        while api_key and api_key != _NO_KEY and chained is not None:
            chained.args = tuple(_redacted(arg, api_key) for arg in chained.args)
            for name in ("message", "body"):
                if hasattr(chained, name):
                    setattr(chained, name, _redacted(getattr(chained, name), api_key))
            chained = chained.__cause__ or chained.__context__
        raise


class OpenAICompatibleChatModel(ChatOpenAI):
    """`ChatOpenAI` for any OpenAI-compatible server.

    Three differences from the stock client: the token limit goes out under the name the
    server understands; a reasoning model's separate `reasoning_content` (vLLM, SGLang,
    DeepSeek) is kept in `additional_kwargs` instead of being dropped; and a plain chat
    completion (what SIFT makes) takes a lean path, below.
    """

    token_limit_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"

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

    # The lean path. For a plain chat completion the stock client (1) walks the request
    # through the OpenAI SDK's typed-params transform, (2) parses the reply into pydantic
    # models that `_create_chat_result` turns straight back into a dict, and (3) on the
    # async path hands that conversion to the default thread pool, a few workers shared
    # by every concurrent call. Together about 1.3 ms of CPU per call, and the pool caps a
    # batch's concurrency. The SDK's documented raw `post` sends the same JSON body and
    # returns the JSON reply as a dict, through the same HTTP client, timeouts, errors
    # and error mapping (it has no response headers, so LangSmith gateway metadata read
    # from them is not kept). Anything else (structured output, the Responses API,
    # response headers, streaming) goes the stock way.
    def _key(self) -> str | None:
        key = self.openai_api_key  # a SecretStr as we build it (ChatOpenAI also takes a callable)
        return key.get_secret_value() if isinstance(key, SecretStr) else None

    def _takes_lean_path(self, payload: dict[str, Any]) -> bool:
        return not (
            payload.get("stream")
            or "response_format" in payload
            or self.include_response_headers
            or self._use_responses_api(payload)
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if not self._takes_lean_path(payload):
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        body, options = chat_completion_request(payload)
        with key_kept_out_of_errors(self._key()), openai_errors_mapped(), self._malformed_replies_named():
            response = self.root_client.post("/chat/completions", body=body, options=options, cast_to=dict)
        return self._create_chat_result(self._checked(response), {})

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if not self._takes_lean_path(payload):
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        body, options = chat_completion_request(payload)
        with key_kept_out_of_errors(self._key()), openai_errors_mapped(), self._malformed_replies_named():
            response = await self._async_client().post("/chat/completions", body=body, options=options, cast_to=dict)
        return self._create_chat_result(self._checked(response), {})

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

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        limit = payload.pop("max_completion_tokens", None) or payload.pop("max_tokens", None)
        if limit is not None:
            payload[self.token_limit_param] = limit
        return payload

    def _create_chat_result(self, response: Any, generation_info: dict[str, Any] | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        raw = response if isinstance(response, dict) else response.model_dump()
        for generation, choice in zip(result.generations, raw.get("choices") or [], strict=False):
            message = choice.get("message") or {}
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if reasoning and isinstance(generation.message, AIMessage):
                generation.message.additional_kwargs["reasoning_content"] = reasoning
        return result
