"""Latency and throughput against a model of fixed latency (the sleeping server).

The model is `openai:bench` behind `benchmarks.server`, reached through sift_graph's own
OpenAI-compatible client (httpx, truly async), so what is measured is what a served run
does. Questions run through `ainvoke` without a checkpointer.

- Latency: one question's wall time vs its critical path (calls on the longest chain x
  L; the two predictions overlap), and vs the same calls made one after another.
- Throughput: N questions at concurrency C vs the ideal, N x critical path / C.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.server import SleepingServer, measure_server
from benchmarks.workloads import CALLS, CRITICAL_CALLS, aplain_sift
from sift_graph import build_sift_graph
from sift_graph.context import SiftContext
from sift_graph.models import resolve_model
from sift_graph.testing import QUESTION

LATENCY_TARGET = 1.10  # wall / critical path
SPEEDUP_TARGET = 1.3  # sequential / wall
THROUGHPUT_TARGET = 1.15  # wall / ideal at C = 64


@dataclass
class LatencyResult:
    workload: str
    latency_ms: float
    wall_ms: float
    critical_ms: float
    sequential_ms: float

    @property
    def vs_critical(self) -> float:
        return self.wall_ms / self.critical_ms

    @property
    def speedup(self) -> float:
        return self.sequential_ms / self.wall_ms


@dataclass
class ThroughputResult:
    concurrency: int
    questions: int
    wall_s: float
    ideal_s: float

    @property
    def vs_ideal(self) -> float:
        return self.wall_s / self.ideal_s


def _context(server: SleepingServer) -> SiftContext:
    # cache="off": the cascade workload is its 11 requests, and the stateless sleeping
    # server answers both forward optimizations alike, which the run's call cache would
    # (rightly) serve without a request.
    return SiftContext(model="openai:bench", base_url=server.base_url, max_tokens=256, cache="off")


async def _latency(workload: str, latency: float, repeats: int) -> LatencyResult:
    with SleepingServer(latency, workload) as server:
        graph = build_sift_graph().compile()
        context = _context(server)
        await graph.ainvoke({"question": QUESTION}, context=context)  # warm: client, connections
        walls = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = await graph.ainvoke({"question": QUESTION}, context=context)
            walls.append(time.perf_counter() - started)
        calls = sum(usage["calls"] for usage in result["usage"].values())
        if calls != CALLS[workload]:
            raise RuntimeError(f"{workload}: expected {CALLS[workload]} calls, the graph made {calls}")
    return LatencyResult(
        workload=workload,
        latency_ms=latency * 1000,
        wall_ms=statistics.median(walls) * 1000,
        critical_ms=CRITICAL_CALLS[workload] * latency * 1000,
        sequential_ms=CALLS[workload] * latency * 1000,
    )


def run_latency(latency: float, repeats: int) -> list[LatencyResult]:
    return [asyncio.run(_latency(workload, latency, repeats)) for workload in ("agree", "cascade")]


async def _throughput(
    latency: float, concurrencies: tuple[int, ...], rounds: int, plain_at: int | None = None
) -> list[ThroughputResult]:
    """Graph runs at each concurrency; with `plain_at`, also the plain cascade (the same
    calls through the same client, no graph) at that concurrency, as a last result."""
    results = []
    with SleepingServer(latency, "agree") as server:
        graph = build_sift_graph().compile()
        context = _context(server)
        await graph.ainvoke({"question": QUESTION}, context=context)
        critical = CRITICAL_CALLS["agree"] * latency
        model = resolve_model(context.model, context.connection, context.load_options)

        async def by_graph() -> None:
            await graph.ainvoke({"question": QUESTION}, context=context)

        async def by_plain() -> None:
            await aplain_sift(model, QUESTION, context)

        runs = [(concurrency, by_graph) for concurrency in concurrencies]
        if plain_at:
            runs.append((plain_at, by_plain))
        for concurrency, run_one in runs:
            questions = concurrency * rounds
            queue: asyncio.Queue[int] = asyncio.Queue()
            for number in range(questions):
                queue.put_nowait(number)

            async def worker(queue: asyncio.Queue[int], run_one: Any) -> None:
                while not queue.empty():
                    queue.get_nowait()
                    await run_one()

            started = time.perf_counter()
            await asyncio.gather(*(worker(queue, run_one) for _ in range(concurrency)))
            wall = time.perf_counter() - started
            results.append(ThroughputResult(concurrency, questions, wall, questions * critical / concurrency))
    return results


def run_throughput(
    latency: float, concurrencies: tuple[int, ...], rounds: int, plain_at: int | None = None
) -> list[ThroughputResult]:
    return asyncio.run(_throughput(latency, concurrencies, rounds, plain_at))


def run_server_alone(latency: float, concurrency: int, requests: int) -> float:
    """The server by itself: wall / ideal for `concurrency` clients of `requests` each."""

    async def go() -> float:
        with SleepingServer(latency) as server:
            await measure_server(server.base_url, concurrency, 1)  # warm
            return await measure_server(server.base_url, concurrency, requests) / (requests * latency)

    return asyncio.run(go())
