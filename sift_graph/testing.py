"""A scripted chat model that answers by SIFT role: for tests, demos and benchmarks.

    model = ScriptedChatModel(script={
        "sticker": STICKER, "predict_sticker": "\\\\boxed{4}", "predict_query_sticker": "\\\\boxed{4}",
    })

Each role maps to one reply or a list of replies used in order (the last one repeats).
A reply is a string, or a dict `{"text": ..., "finish_reason": "length"}` to simulate a
cut-off. The role is read from the call's `sift:<role>` tag, so an untagged call fails.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from sift_graph.calls import TAG_PREFIX

Reply = str | dict[str, Any]


@dataclass(frozen=True)
class RecordedCall:
    role: str
    prompt: str
    kwargs: dict[str, Any]
    started: float
    finished: float


class ScriptedChatModel(BaseChatModel):
    script: dict[str, Reply | list[Reply]]
    latency: float = 0.0
    """Seconds each call takes (sleeps; `asyncio.sleep` on the async path)."""
    before_reply: Callable[[str], None] | None = None
    """Called with the role inside every sync call, before it replies (test hooks)."""
    failures: dict[str, int] = {}
    """Per role, how many first calls raise ConnectionError (a transient fault to retry)."""
    accepts_decoding_kwargs: bool = True

    _calls: list[RecordedCall] = PrivateAttr(default_factory=list)
    _served: dict[str, int] = PrivateAttr(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _attempts: dict[str, int] = PrivateAttr(default_factory=dict)
    _in_flight: int = PrivateAttr(default=0)
    _max_in_flight: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "sift-scripted"

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    @property
    def max_in_flight(self) -> int:
        """Most calls that were ever in progress at the same moment."""
        return self._max_in_flight

    def call_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for call in self.calls:
            counts[call.role] += 1
        return dict(counts)

    def _role(self, run_manager: Any) -> str:
        tags = list(getattr(run_manager, "tags", None) or [])
        roles = [tag[len(TAG_PREFIX) :] for tag in tags if tag.startswith(TAG_PREFIX)]
        if len(roles) != 1:
            raise ValueError(f"ScriptedChatModel: expected one '{TAG_PREFIX}<role>' tag, got {tags}")
        return roles[0]

    def _start(self, role: str) -> dict[str, Any]:
        """Count the call in, and pick its reply (or its scripted fault)."""
        if role not in self.script:
            raise KeyError(f"ScriptedChatModel: no reply scripted for role {role!r}")
        replies = self.script[role]
        with self._lock:
            attempt = self._attempts[role] = self._attempts.get(role, 0) + 1
            if attempt <= self.failures.get(role, 0):
                raise ConnectionError(f"scripted fault {attempt} for role {role!r}")
            index = self._served[role]
            self._served[role] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        if isinstance(replies, list):
            reply = replies[min(index, len(replies) - 1)]
        else:
            reply = replies
        return {"text": reply, "finish_reason": "stop"} if isinstance(reply, str) else reply

    def _result(self, prompt: str, reply: dict[str, Any]) -> ChatResult:
        text = reply["text"]
        input_tokens, output_tokens = len(prompt.split()), len(text.split())
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            response_metadata={"finish_reason": reply.get("finish_reason", "stop")},
            additional_kwargs={k: v for k, v in reply.items() if k == "reasoning_content"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _begin(self, messages: list[BaseMessage], run_manager: Any) -> tuple[str, str, dict[str, Any], float]:
        role = self._role(run_manager)
        return role, str(messages[-1].content), self._start(role), time.monotonic()

    def _finish(self, role: str, prompt: str, kwargs: dict[str, Any], started: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self._calls.append(RecordedCall(role, prompt, dict(kwargs), started, time.monotonic()))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        role, prompt, reply, started = self._begin(messages, run_manager)
        try:
            if self.before_reply is not None:
                self.before_reply(role)
            if self.latency > 0:  # an instant model must not give up the GIL (sleep(0) does)
                time.sleep(self.latency)
        finally:
            self._finish(role, prompt, kwargs, started)
        return self._result(prompt, reply)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        role, prompt, reply, started = self._begin(messages, run_manager)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self._finish(role, prompt, kwargs, started)
        return self._result(prompt, reply)
