"""What a served request may not do to the server: a body past the size limit (413), a
body nested past the parser's depth, a lone surrogate or an over-long question (400s
naming the field), and a client that hangs up is not a server error."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sift_graph import SiftContext
from sift_graph.serve import ServeSettings, SiftService, create_app
from sift_graph.serve.app import MAX_BODY_BYTES, ClientDisconnected, until_disconnected
from sift_graph.state import MAX_QUESTION_CHARS
from sift_graph.testing import QUESTION, ScriptedChatModel

from helpers import EVERY_STAGE, serving


@pytest.fixture(scope="module")
def url():
    model = ScriptedChatModel(script=EVERY_STAGE)
    service = SiftService(ServeSettings(context=SiftContext(model=model), checkpoints="memory", retry_policy=None))
    with serving(create_app(service)) as base:
        yield f"{base}/chat/completions"


def post(url: str, content: bytes | str) -> httpx.Response:
    return httpx.post(url, content=content, headers={"content-type": "application/json"}, timeout=30)


def error_of(response: httpx.Response) -> dict[str, object]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}  # OpenAI's shape
    return error


def test_a_body_past_the_limit_is_a_413_unread(url):
    response = post(url, b'{"model": "sift", "messages": [' + b" " * MAX_BODY_BYTES + b"]}")
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_a_body_past_the_limit_without_a_declared_length_is_a_413(url):
    chunks = (b" " * 65536 for _ in range(MAX_BODY_BYTES // 65536 + 2))  # chunked: no content-length
    response = httpx.post(url, content=chunks, timeout=30)
    assert response.status_code == 413


def test_a_deeply_nested_body_is_a_400(url):
    response = post(url, "[" * 100_000 + "]" * 100_000)
    assert response.status_code == 400
    assert "nested too deeply" in str(error_of(response)["message"])


def test_a_lone_surrogate_in_a_message_is_a_400_naming_messages(url):
    body = '{"model": "sift", "messages": [{"role": "user", "content": "How many? \\ud800"}]}'
    response = post(url, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages" and "surrogate" in str(error["message"])


def test_a_question_past_the_limit_is_a_400_naming_messages(url):
    question = "a" * (MAX_QUESTION_CHARS + 1)
    response = httpx.post(url, json={"model": "sift", "messages": [{"role": "user", "content": question}]}, timeout=30)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages" and str(MAX_QUESTION_CHARS) in str(error["message"])


def test_a_question_within_the_limits_is_answered(url):
    response = httpx.post(url, json={"model": "sift", "messages": [{"role": "user", "content": QUESTION}]}, timeout=30)
    assert response.status_code == 200


class HungUp:
    """A request whose client has gone: its first receive is the disconnect."""

    async def receive(self) -> dict[str, str]:
        return {"type": "http.disconnect"}


async def test_a_client_hanging_up_is_a_disconnect_not_an_error():
    started = asyncio.Event()

    async def work() -> str:
        started.set()
        await asyncio.Event().wait()  # never finishes by itself
        return "never"

    with pytest.raises(ClientDisconnected):
        await until_disconnected(HungUp(), work())  # type: ignore[arg-type]


async def test_work_done_first_is_its_result():
    class Silent:
        async def receive(self) -> dict[str, str]:
            await asyncio.Event().wait()
            return {}

    async def work() -> str:
        return "done"

    assert await until_disconnected(Silent(), work()) == "done"  # type: ignore[arg-type]
