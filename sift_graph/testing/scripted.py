"""A scripted chat model that answers by SIFT role: for tests, demos and benchmarks.

    model = ScriptedChatModel(script={
        "sticker": STICKER, "predict_sticker": "\\\\boxed{4}", "predict_query_sticker": "\\\\boxed{4}",
    })

Each role maps to one reply or a list of replies used in order (the last one repeats).
A reply is a string, or a dict `{"text": ..., "finish_reason": "length"}` to simulate a
cut-off. The role is read from the call's `sift:<role>` tag, so an untagged call fails.

The model spec `scripted:<file.json>` loads one from a JSON file (see
`scripted_model_from_file`), so a subprocess, the CLI or a LangGraph server can run SIFT
with no weights at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from sift_graph.models.specs import Connection, LoadOptions
from sift_graph.state import TAG_PREFIX, role_of_tags

Reply = str | dict[str, Any]


@dataclass(frozen=True)
class RecordedCall:
    role: str
    prompt: str
    kwargs: dict[str, Any]
    started: float
    finished: float
    outcome: str = "finish"
    """"finish", or "cancel" for a call its caller cancelled mid-flight (async path)."""


class ScriptedChatModel(BaseChatModel):
    script: dict[str, Reply | list[Reply]]
    latency: float = 0.0
    """Seconds each call takes (sleeps; `asyncio.sleep` on the async path)."""
    before_reply: Callable[[str], None] | None = None
    """Called with the role inside every call, before it replies (test hooks)."""
    failures: dict[str, int] = Field(default_factory=dict)
    """Per role, how many first calls raise ConnectionError (a transient fault to retry)."""
    accepts_decoding_kwargs: bool = True
    hold: dict[str, int] = Field(default_factory=dict)
    """Per role, the call number (1-based) that never returns: a process stuck mid-call,
    for crash tests that kill it there."""
    call_log: str | None = None
    """A file to which every call's start and finish are appended as JSON lines (fsynced),
    so that a test can see which calls a killed process had finished."""
    resume_from_log: bool = False
    """Start where the calls finished in `call_log` (by earlier, killed processes) left
    off, so a resumed process gets the replies an uninterrupted run would: the fake's
    stand-in for a deterministic model, whose reply depends on how far the run is."""

    _calls: list[RecordedCall] = PrivateAttr(default_factory=list)
    _served: dict[str, int] = PrivateAttr(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _attempts: dict[str, int] = PrivateAttr(default_factory=dict)
    _in_flight: int = PrivateAttr(default=0)
    _max_in_flight: int = PrivateAttr(default=0)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        if self.resume_from_log and self.call_log is not None and os.path.exists(self.call_log):
            with open(self.call_log, encoding="utf-8") as log:
                for line in log:
                    entry = json.loads(line)
                    if entry["event"] == "finish":
                        self._served[entry["role"]] += 1

    @property
    def _llm_type(self) -> str:
        return "sift-scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Part of LangChain's cache key: two scripts never share a cached reply.
        return {"script": hashlib.sha256(json.dumps(self.script, sort_keys=True).encode()).hexdigest()}

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
        role = role_of_tags(tags)
        if role is None:
            raise ValueError(f"ScriptedChatModel: expected one '{TAG_PREFIX}<role>' tag, got {tags}")
        return role

    def _fault(self, role: str) -> ConnectionError | None:
        """This attempt's scripted fault, if it is one of the role's first `failures`."""
        with self._lock:
            attempt = self._attempts[role] = self._attempts.get(role, 0) + 1
        if attempt <= self.failures.get(role, 0):
            return ConnectionError(f"scripted fault {attempt} for role {role!r}")
        return None

    def _start(self, role: str) -> dict[str, Any]:
        """Count the call in, and pick its reply."""
        if role not in self.script:
            raise KeyError(f"ScriptedChatModel: no reply scripted for role {role!r}")
        replies = self.script[role]
        with self._lock:
            index = self._served[role]
            self._served[role] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        if isinstance(replies, list):
            reply = replies[min(index, len(replies) - 1)]
        else:
            reply = replies
        reply = {"text": reply, "finish_reason": "stop"} if isinstance(reply, str) else dict(reply)
        reply["call"] = index + 1  # this role's call number, 1-based
        return reply

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

    def _begin(self, role: str, messages: list[BaseMessage]) -> tuple[str, dict[str, Any], float]:
        reply = self._start(role)
        self._log("start", role, reply["call"])
        return messages[-1].text, reply, time.monotonic()

    def _finish(
        self, role: str, prompt: str, kwargs: dict[str, Any], started: float, call: int, outcome: str = "finish"
    ) -> None:
        with self._lock:
            self._in_flight -= 1
            self._calls.append(RecordedCall(role, prompt, dict(kwargs), started, time.monotonic(), outcome))
        self._log(outcome, role, call)

    def _unserve(self, role: str, call: int) -> None:
        """A call cancelled before it answered gives its reply back: made again, it gets
        the reply it would have had (a deterministic model's, by call order)."""
        with self._lock:
            if self._served[role] == call:
                self._served[role] -= 1

    def _held(self, role: str, reply: dict[str, Any]) -> bool:
        return bool(reply["call"] == self.hold.get(role))

    def _log(self, event: str, role: str, call: int) -> None:
        if self.call_log is None:
            return
        line = json.dumps({"event": event, "role": role, "call": call, "pid": os.getpid()})
        with self._lock, open(self.call_log, "a", encoding="utf-8") as log:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        role = self._role(run_manager)
        if (fault := self._fault(role)) is not None:
            raise fault
        prompt, reply, started = self._begin(role, messages)
        try:
            if self.before_reply is not None:
                self.before_reply(role)
            while self._held(role, reply):
                time.sleep(1.0)
            if self.latency > 0:  # an instant model must not give up the GIL (sleep(0) does)
                time.sleep(self.latency)
        finally:
            self._finish(role, prompt, kwargs, started, reply["call"])
        return self._result(prompt, reply)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        role = self._role(run_manager)
        if (fault := self._fault(role)) is not None:
            raise fault
        prompt, reply, started = self._begin(role, messages)
        try:
            if self.before_reply is not None:
                self.before_reply(role)
            while self._held(role, reply):
                await asyncio.sleep(0.05)
            await asyncio.sleep(self.latency)
        except asyncio.CancelledError:  # the caller gave up: a request cut off mid-flight
            self._finish(role, prompt, kwargs, started, reply["call"], "cancel")
            self._unserve(role, reply["call"])
            raise
        self._finish(role, prompt, kwargs, started, reply["call"])
        return self._result(prompt, reply)


def scripted_model_from_file(path: str | os.PathLike[str]) -> ScriptedChatModel:
    """A `ScriptedChatModel` from a JSON file: the script itself (`{role: reply(s)}`), or
    the keyword arguments of the class, e.g.

        {"script": {"sticker": "...", "predict_sticker": ["\\boxed{3}", "\\boxed{4}"], ...},
         "latency": 0.05, "hold": {"predict_query_sticker": 2}, "call_log": "calls.jsonl"}

    Raises ValueError naming the `model` field when the file is missing or malformed.
    """
    file = Path(path).expanduser()
    try:
        settings = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"model: cannot read scripted model file {str(file)!r}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"model: scripted model file {str(file)!r} is not JSON: {exc}") from exc
    if not isinstance(settings, dict):
        raise ValueError(f"model: scripted model file {str(file)!r} must hold a JSON object")
    if "script" not in settings:  # the file is the script itself
        settings = {"script": settings}
    if not isinstance(settings["script"], dict):
        raise ValueError(f"model: scripted model file {str(file)!r} needs a 'script' object of replies by role")
    try:
        return ScriptedChatModel(**settings)
    except Exception as exc:  # pydantic's message names the bad key
        raise ValueError(f"model: scripted model file {str(file)!r}: {exc}") from exc


def load_spec_target(
    target: str, connection: Connection | None = None, options: LoadOptions | None = None
) -> ScriptedChatModel:
    """The `scripted:<file.json>` model spec."""
    return scripted_model_from_file(target)
