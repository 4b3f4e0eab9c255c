"""One request of the lean path (see `openai_compat`), through the OpenAI SDK's documented
raw `post`: its events read into chunks, a whole completion (a server that does not
stream) read as one event, errors mapped as the stock client maps them with the API key
kept out of their messages, and replies that are no chat completion named as such."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import openai
from langchain_core.outputs import ChatGenerationChunk

from sift_graph.faults import MalformedReplyError
from sift_graph.models.openai_errors import (
    chat_completion_problem,
    key_kept_out_of_errors,
    openai_errors_mapped,
    stream_errors_mapped,
)
from sift_graph.models.openai_stream import StreamReader, is_event_stream, whole_completion

_Events = openai.Stream[dict[str, Any]]
_AsyncEvents = openai.AsyncStream[dict[str, Any]]


class Transport:
    """Requests to one server (`client`: the SDK's sync or async client)."""

    def __init__(self, client: Any, key: str | None) -> None:
        self.client, self.key = client, key

    def chunks(
        self, body: dict[str, Any], options: dict[str, Any], reader: StreamReader
    ) -> Iterator[ChatGenerationChunk]:
        with self.errors_mapped():
            events = self.client.post(
                "/chat/completions", body=body, options=options, cast_to=dict, stream=True, stream_cls=_Events
            )
            try:
                with stream_errors_mapped(events.response.request):
                    whole = not is_event_stream(events.response)
                    for event in whole_completion(events.response, self.checked) if whole else events:
                        if (chunk := reader.read(event)) is not None:
                            yield chunk
            finally:
                events.close()
        self.check_ended(reader, events.response.request)

    async def achunks(
        self, body: dict[str, Any], options: dict[str, Any], reader: StreamReader
    ) -> AsyncIterator[ChatGenerationChunk]:
        with self.errors_mapped():
            events = await self.client.post(
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
                        for event in whole_completion(events.response, self.checked):
                            if (chunk := reader.read(event)) is not None:
                                yield chunk
            finally:
                await events.close()
        self.check_ended(reader, events.response.request)

    @contextmanager
    def errors_mapped(self) -> Iterator[None]:
        with key_kept_out_of_errors(self.key), openai_errors_mapped():
            try:
                yield
            except json.JSONDecodeError as exc:
                raise self.malformed(f"invalid JSON ({exc.msg} at character {exc.pos})") from exc

    def check_ended(self, reader: StreamReader, request: Any) -> None:
        """A stream with nothing in it is no reply; one that stopped before its finish
        reason broke off (a transient fault: the retry continues what was saved)."""
        if not reader.chunks:
            raise self.malformed("an empty stream")
        if not reader.ended:
            raise openai.APIConnectionError(message="the stream ended before the reply did", request=request)

    def malformed(self, what: str) -> MalformedReplyError:
        return MalformedReplyError(
            f"the server at {self.client.base_url} returned {what}, not an OpenAI chat completion"
        )

    def checked(self, response: Any) -> dict[str, Any]:
        problem = chat_completion_problem(response)
        if problem is not None:
            raise self.malformed(problem)
        checked: dict[str, Any] = response
        return checked
