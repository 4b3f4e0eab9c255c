"""Local model throughput: SIFT questions on one local model at C questions in flight.

GSM8K questions run through `graph.abatch(..., max_concurrency=C)` on one loaded local
model, whose scheduler generates every call in flight together. Reported per C: output
tokens per second (all calls' output tokens over the wall), the speedup over C = 1 (one
question in flight, whose two predictions already generate together), and how the batch
size moved: rows per decoding step, on average and over ten equal slices of the wall.

Beside each level, the floor transformers itself sets: its own `generate` on a fixed
left-padded batch of that level's mean batch size (SIFT prompts of those questions, every
row decoding `max_tokens` tokens). The ratio of two levels' floors is the most batching
can buy on this device, whatever the scheduler does.

On a CPU the model is the embedded SmolLM2-135M; where CUDA is available it is a tiny
randomly initialized Llama built on the spot (GPU machines take no model files).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from sift_graph import build_sift_graph, prompts
from sift_graph.context import SiftContext
from sift_graph.evaluation.datasets import load_dataset
from sift_graph.models import LocalChatModel, resolve_model
from sift_graph.testing.tiny_llama import load_tiny_llama

# Questions in flight, and the speedup over one question in flight each level must reach.
CPU_LEVELS, CPU_TARGETS = [1, 4, 8, 16], {8: 4.0, 16: 6.0}
GPU_LEVELS, GPU_TARGETS = [1, 4, 8, 16, 64], {64: 20.0}
TIMELINE_SLICES = 10


@dataclass
class LevelResult:
    in_flight: int
    questions: int
    calls: int
    output_tokens: int
    wall_s: float
    rows_per_step: float
    timeline: list[float]
    """Mean rows per decoding step in each of TIMELINE_SLICES equal slices of the wall."""
    floor_batch: int = 1
    floor_tokens_per_s: float = 0.0
    """transformers' `generate` on a fixed batch of `floor_batch` rows: output tokens/s."""

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s


@dataclass
class LocalResult:
    model: str
    dtype: str
    device: str
    max_tokens: int
    load_s: float
    levels: list[LevelResult]
    targets: dict[int, float]

    def speedup(self, level: LevelResult) -> float:
        return level.tokens_per_s / self.levels[0].tokens_per_s

    def floor_speedup(self, level: LevelResult) -> float:
        """The speedup transformers' own batched `generate` gets at this level's batch size."""
        return level.floor_tokens_per_s / self.levels[0].floor_tokens_per_s


def batch_timeline(trace: list[tuple[float, int]], start: float, end: float) -> tuple[float, list[float]]:
    """(mean rows per step, mean rows per step in each slice of [start, end]) from a
    scheduler's (time, rows) per step; a slice without a step counts 0."""
    steps = [(at, rows) for at, rows in trace if start <= at <= end]
    if not steps:
        return 0.0, [0.0] * TIMELINE_SLICES
    width = (end - start) / TIMELINE_SLICES
    slices: list[list[int]] = [[] for _ in range(TIMELINE_SLICES)]
    for at, rows in steps:
        slices[min(int((at - start) / width), TIMELINE_SLICES - 1)].append(rows)
    return statistics.fmean(rows for _, rows in steps), [statistics.fmean(s) if s else 0.0 for s in slices]


async def run_level(model: LocalChatModel, questions: list[str], in_flight: int, max_tokens: int) -> LevelResult:
    graph = build_sift_graph().compile()
    context = SiftContext(model=model, max_tokens=max_tokens)
    # A semaphore, not abatch's max_concurrency: that one also caps the tasks inside each
    # run, which would make a question's two predictions take turns at C = 1.
    gate = asyncio.Semaphore(in_flight)

    async def one(question: str) -> Any:
        async with gate:
            return await graph.ainvoke({"question": question}, context=context)

    started = time.monotonic()
    results = await asyncio.gather(*(one(question) for question in questions))
    ended = time.monotonic()
    usages = [usage for result in results for usage in result["usage"].values()]
    rows, timeline = batch_timeline(model.scheduler.batch_sizes(started), started, ended)
    return LevelResult(
        in_flight=in_flight,
        questions=len(questions),
        calls=sum(usage["calls"] for usage in usages),
        output_tokens=sum(usage["output_tokens"] for usage in usages),
        wall_s=ended - started,
        rows_per_step=rows,
        timeline=timeline,
    )


def generate_floor(model: LocalChatModel, questions: list[str], batch: int, max_tokens: int) -> float:
    """Output tokens/s of transformers' `generate` on `batch` left-padded SIFT prompts
    (the sticker prompts of `questions`, repeated as needed), each row decoding exactly
    `max_tokens` greedy tokens."""
    import torch

    tokenizer, hf_model = model.tokenizer, model.hf_model
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompts.sticker_prompt(questions[row % len(questions)])}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for row in range(batch)
    ]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    started = time.monotonic()
    with torch.inference_mode():
        hf_model.generate(
            **encoded.to(hf_model.device),
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
    return batch * max_tokens / (time.monotonic() - started)


def _load(on_gpu: bool) -> tuple[str, LocalChatModel]:
    if on_gpu:
        folder = tempfile.mkdtemp(prefix="sift-tiny-llama-")
        model = load_tiny_llama(folder, dtype="auto")
        name = "tiny random Llama (1 layer)"
    else:
        model = resolve_model("default")
        name = "SmolLM2-135M"
    assert isinstance(model, LocalChatModel)
    return name, model


def run(max_tokens: int, questions_per_level: int = 2, levels: list[int] | None = None) -> LocalResult:
    """Each level C runs `questions_per_level` x C GSM8K questions (at least 2); the
    levels are the device's (CPU_LEVELS or GPU_LEVELS) unless given."""
    import torch

    on_gpu = torch.cuda.is_available()
    levels = levels or (GPU_LEVELS if on_gpu else CPU_LEVELS)
    started = time.monotonic()
    name, model = _load(on_gpu)
    load_s = time.monotonic() - started
    hf_model = model.hf_model
    _, questions = load_dataset("gsm8k", max(2, questions_per_level * max(levels)))
    texts = [question.question for question in questions]
    asyncio.run(run_level(model, texts[:1], 1, 4))  # warm-up: first-call costs out of the rows
    results = []
    for level in levels:
        result = asyncio.run(run_level(model, texts[: max(2, questions_per_level * level)], level, max_tokens))
        print(f"[local: C={level} {result.tokens_per_s:.1f} tokens/s]", file=sys.stderr, flush=True)
        results.append(result)
    for result in results:
        result.floor_batch = max(1, round(result.rows_per_step))
        result.floor_tokens_per_s = generate_floor(model, texts, result.floor_batch, max_tokens)
        print(f"[local: floor at batch {result.floor_batch} {result.floor_tokens_per_s:.1f} tokens/s]", file=sys.stderr)
    return LocalResult(
        model=name,
        dtype=str(hf_model.dtype).removeprefix("torch."),
        device=str(hf_model.device),
        max_tokens=max_tokens,
        load_s=load_s,
        levels=results,
        targets=GPU_TARGETS if on_gpu else CPU_TARGETS,
    )
