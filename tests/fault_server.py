"""A small OpenAI-compatible server on loopback that misbehaves on request.

A request that waits (`hang`, `until`) watches its connection: if the client hangs up
first, it is counted in `abandoned` (by role) and never answered, which is how a test
sees that a client cancelled its call.

Each chat completion request is answered by the next planned action for its SIFT role
(the role is recognised from the prompt), else by the role's normal reply:

    {"status": 429}                      an HTTP error with an OpenAI-style error body
    {"status": 401, "message": "..."}    ... with this message
    {"status": 400, "code": "..."}       ... with this error code
    {"hang": 2.0}                        wait this long, then answer normally
    {"until": threading.Event()}         wait until the test sets the event (at most 60 s), then answer
    {"drop": True}                       send part of a response and close the connection
    {"raw": "<html>..", "content_type": "text/html"}   a 200 whose body is this text as is
    {"content": "...", "finish_reason": "stop", "reasoning_content": "..."}   a reply
    {"content": "...", "cut_after": 70}  streamed: 70 tokens, then the connection closes
    {"content": "...", "pause_after": 3, "until": event}   streamed: 3 tokens, then the rest once set

A request with `stream: true` is answered with server-sent events, one word (a "token")
per event, `token_delay` seconds apart, and a last event with the usage when asked
(`stream_options.include_usage`). A request whose last message is the assistant's (a
continuation) is answered as llama.cpp's server does: the role's reply goes on after the
text it was given (which must be the start of that reply), and only for the tokens
the request's `max_tokens` leaves. `owned_by` is what `/models` says serves the model.
A client's usage probe (the one-token stream that asks whether streams carry usage) is
answered as asked, outside any plan, and kept in `probes` rather than `requests`.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sift_graph.models.openai_stream import USAGE_PROBE_PROMPT
from sift_graph.prompts import role_of_prompt

MAX_WAIT_S = 60.0  # an `until` whose event is never set still ends


class FaultServer:
    def __init__(
        self,
        replies: dict[str, str | list[str]],
        token_delay: float = 0.0,
        owned_by: str = "llamacpp",
        stream_usage: bool = True,
        probe_usage: bool | None = None,
    ) -> None:
        self.replies = dict(replies)
        self.stream_usage = stream_usage
        """False: streams never carry usage, whatever `stream_options` asks (llama-cpp-python's server)."""
        self.probe_usage = stream_usage if probe_usage is None else probe_usage
        """Whether a usage probe's stream carries usage (as the calls' streams, unless told)."""
        self.token_delay = token_delay
        self.owned_by = owned_by
        self.streamed_tokens: list[int] = []
        """Tokens sent per streamed request, in order of arrival."""
        self._served: dict[str, int] = {}
        self.plan: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.requests: list[dict[str, Any]] = []
        """The chat completion requests received, usage probes aside (see `probes`)."""
        self.probes: list[dict[str, Any]] = []
        """The one-token requests a client sent to learn whether streams carry usage."""
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self.abandoned: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def roles(self) -> list[str]:
        """The role of every request received, in order of arrival."""
        with self._lock:
            return [role_of_prompt(user_prompt(request)) for request in self.requests]

    def count(self, role: str) -> int:
        return self.roles().count(role)

    def _next_action(self, role: str) -> dict[str, Any]:
        with self._lock:
            planned = self.plan.get(role)
            if planned:
                return planned.pop(0)
        return {"content": self._reply(role)}

    def _reply(self, role: str) -> str:
        """The role's reply: one text, or a list served in order (the last repeats)."""
        replies = self.replies[role]
        if isinstance(replies, str):
            return replies
        with self._lock:
            served = self._served[role] = self._served.get(role, 0) + 1
        return str(replies[min(served, len(replies)) - 1])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send_json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                model = {"id": "test-model", "object": "model", "owned_by": server.owned_by}
                self._send_json(200, {"object": "list", "data": [model]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if user_prompt(body) == USAGE_PROBE_PROMPT:  # answered as asked, outside any plan
                    with server._lock:
                        server.probes.append(body)
                    self._stream(body, USAGE_PROBE_PROMPT, {"content": "OK", "probe": True})
                    return
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({key.lower(): value for key, value in self.headers.items()})
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._answer(body)
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _client_gone(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)

            def _wait(self, seconds: float, gate: threading.Event | None) -> bool:
                """Wait `seconds` or until `gate` is set; False if the client hung up first."""
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline and not (gate is not None and gate.is_set()):
                    if self._client_gone():
                        return False
                return True

            def _answer(self, body: dict[str, Any]) -> None:
                prompt = user_prompt(body)
                role = role_of_prompt(prompt)
                action = server._next_action(role)
                if "status" in action:
                    message = action.get("message", f"injected {action['status']}")
                    error = {"message": message, "type": "server_error", "code": action.get("code")}
                    self._send_json(action["status"], {"error": error})
                    return
                if "raw" in action:
                    data = action["raw"].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", action.get("content_type", "application/json"))
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if action.get("drop"):
                    self.wfile.write(
                        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"id":'
                    )
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if ("hang" in action or "until" in action) and "pause_after" not in action:
                    if not self._wait(action.get("hang", MAX_WAIT_S), action.get("until")):
                        with server._lock:
                            server.abandoned.append(role)
                        self.close_connection = True
                        return
                    action = {"content": server._reply(role)}
                content = action["content"]
                if body.get("stream"):
                    self._stream(body, prompt, action)
                    return
                    return
                message: dict[str, Any] = {"role": "assistant", "content": content}
                if "reasoning_content" in action:
                    message["reasoning_content"] = action["reasoning_content"]
                prompt_tokens, completion_tokens = len(prompt.split()), len(content.split())
                self._send_json(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "test-model"),
                        "choices": [
                            {"index": 0, "message": message, "finish_reason": action.get("finish_reason", "stop")}
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )

            def _stream(self, body: dict[str, Any], prompt: str, action: dict[str, Any]) -> None:
                content, finish_reason = action["content"], action.get("finish_reason", "stop")
                given = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "assistant" else ""
                if not content.startswith(given):
                    raise AssertionError(f"asked to continue {given!r}, not the start of {content!r}")
                words = [word for word in re.split(r"(\S+\s*)", content[len(given) :]) if word]
                limit = body.get("max_tokens")
                if isinstance(limit, int) and limit < len(words):
                    words, finish_reason = words[:limit], "length"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                sent = 0
                try:
                    if "reasoning_content" in action:
                        delta = {"reasoning_content": action["reasoning_content"]}
                        self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                    for word in words[: action.get("cut_after")]:
                        if sent == action.get("pause_after") and not self._wait(MAX_WAIT_S, action["until"]):
                            break
                        self._event({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
                        sent += 1
                        if server.token_delay and not self._wait(server.token_delay, None):
                            break
                    else:
                        if "cut_after" in action:  # broken off: no end of stream
                            self.connection.shutdown(socket.SHUT_RDWR)
                            raise BrokenPipeError
                        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
                        counts = server.probe_usage if action.get("probe") else server.stream_usage
                        if counts and (body.get("stream_options") or {}).get("include_usage"):
                            prompt_tokens = len(prompt.split()) + len(given.split())
                            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": sent}
                            self._event({"choices": [], "usage": {**usage, "total_tokens": prompt_tokens + sent}})
                        self.wfile.write(b"data: [DONE]\n\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                with server._lock:
                    if not action.get("probe"):
                        server.streamed_tokens.append(sent)
                self.close_connection = True

            def _event(self, data: dict[str, Any]) -> None:
                event = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": "test-model", **data}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()

        return Handler


def user_prompt(request: dict[str, Any]) -> str:
    """The prompt of a chat request (the last user message: a continuation ends with the assistant's)."""
    return str(next(message["content"] for message in reversed(request["messages"]) if message["role"] == "user"))
