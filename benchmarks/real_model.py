"""The real thing: SIFT questions with the embedded SmolLM2-135M on this CPU.

Reports the load time (once per process), wall per question, output tokens per second
while the model generates, and the share of each question's wall spent inside model
calls (the union of the calls' intervals, since the two predictions overlap).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from sift_graph import build_sift_graph
from sift_graph.context import SiftContext
from sift_graph.models import resolve_model

QUESTIONS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
)
MODEL_SHARE_TARGET = 0.95


class CallTimer(BaseCallbackHandler):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: dict[UUID, float] = {}
        self.intervals: list[tuple[float, float]] = []
        self.output_tokens = 0

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self.lock:
            self.started[run_id] = time.perf_counter()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        ended = time.perf_counter()
        tokens = sum(
            ((getattr(generation, "message", None) and generation.message.usage_metadata) or {}).get("output_tokens", 0)
            for generations in response.generations
            for generation in generations
        )
        with self.lock:
            self.intervals.append((self.started.pop(run_id), ended))
            self.output_tokens += tokens

    def busy_seconds(self) -> float:
        """Length of the union of the calls' intervals."""
        total, current_start, current_end = 0.0, None, None
        for start, end in sorted(self.intervals):
            if current_end is None or start > current_end:
                if current_end is not None:
                    total += current_end - current_start
                current_start, current_end = start, end
            else:
                current_end = max(current_end, end)
        if current_end is not None:
            total += current_end - current_start
        return total


@dataclass
class RealModelResult:
    questions: int
    max_tokens: int
    load_s: float
    wall_per_question_s: float
    calls_per_question: float
    output_tokens_per_s: float
    model_share: float


def run(max_tokens: int = 96, questions: int = 2) -> RealModelResult:
    started = time.perf_counter()
    resolve_model("default")
    load = time.perf_counter() - started
    graph = build_sift_graph().compile()
    context = SiftContext(model="default", max_tokens=max_tokens)
    walls, busy, tokens, calls = 0.0, 0.0, 0, 0
    chosen = [QUESTIONS[i % len(QUESTIONS)] for i in range(questions)]
    for question in chosen:
        timer = CallTimer()
        started = time.perf_counter()
        graph.invoke({"question": question}, {"callbacks": [timer]}, context=context)
        walls += time.perf_counter() - started
        busy += timer.busy_seconds()
        tokens += timer.output_tokens
        calls += len(timer.intervals)
    return RealModelResult(
        questions=len(chosen),
        max_tokens=max_tokens,
        load_s=load,
        wall_per_question_s=walls / len(chosen),
        calls_per_question=calls / len(chosen),
        output_tokens_per_s=tokens / busy if busy else 0.0,
        model_share=busy / walls if walls else 0.0,
    )
