"""`sift eval --server` through `langgraph dev` (`python -m benchmarks --only server`).

(benchmarks/server.py is the sleeping model server itself; this module is the section
that evaluates on a LangGraph server in front of it.)

N questions under the `agree` workload (CoT, then SIFT agreeing in round 1: a critical
path of 3 calls per question, CoT -> sticker -> both predictions) against the sleeping
OpenAI-compatible server, at concurrency C: wall time vs the ideal, N x 3 x L / C, on
the server path (every run a background run on `langgraph dev --n-jobs-per-worker`,
joined through langgraph-sdk, records stored as `sift eval` stores them) and, beside
it, the in-process eval's (`runner.run_eval`) on the same questions and model.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.server import SleepingServer
from sift_graph.context import SiftContext
from sift_graph.evaluation.datasets import load_jsonl
from sift_graph.evaluation.results import EvalConfig, ResultStore
from sift_graph.evaluation.runner import run_eval
from sift_graph.evaluation.server import connect, open_client, run_server_eval, server_config
from sift_graph.models import resolve_model
from sift_graph.testing.langgraph_dev import langgraph_dev

ROOT = Path(__file__).resolve().parent.parent
CRITICAL_CALLS = 3
"""CoT, then SIFT's sticker, then its two predictions together: the agree workload."""


@dataclass
class ServerEvalResult:
    path: str
    """"server" or "in-process"."""
    concurrency: int
    questions: int
    wall_s: float
    ideal_s: float
    errors: int

    @property
    def vs_ideal(self) -> float:
        return self.wall_s / self.ideal_s


def write_questions(folder: Path, count: int) -> Path:
    path = folder / "bench.jsonl"
    lines = [
        json.dumps({"question": f"Ann has 3 apples and buys 2 more (#{k}). How many?", "answer": "5"})
        for k in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _server_pass(url: str, dataset: Path, out: Path, concurrency: int, latency: float) -> ServerEvalResult:
    questions = load_jsonl(dataset)
    context = SiftContext()
    client = open_client(url)
    target = await connect(client, url, "sift")
    store = ResultStore(out, "bench", server_config(context, target))
    started = time.perf_counter()
    with store.held():
        outcome = await run_server_eval(
            questions, client=client, target=target, store=store, context=context, concurrency=concurrency
        )
    wall = time.perf_counter() - started
    ideal = math.ceil(len(questions) / concurrency) * CRITICAL_CALLS * latency
    return ServerEvalResult("server", concurrency, len(questions), wall, ideal, outcome.errors)


async def _local_pass(base_url: str, dataset: Path, out: Path, concurrency: int, latency: float) -> ServerEvalResult:
    questions = load_jsonl(dataset)
    context = SiftContext(model="openai:bench", base_url=base_url, api_key="unused")
    store = ResultStore(out, "bench", EvalConfig.from_context(context))
    context.model = resolve_model(context.model, context.connection)
    started = time.perf_counter()
    with store.held():
        outcome = await run_eval(questions, store=store, context=context, concurrency=concurrency, progress=None)
    wall = time.perf_counter() - started
    ideal = math.ceil(len(questions) / concurrency) * CRITICAL_CALLS * latency
    return ServerEvalResult("in-process", concurrency, len(questions), wall, ideal, outcome.errors)


def run(latency: float, questions: int, concurrencies: tuple[int, ...]) -> list[ServerEvalResult]:
    """Each concurrency on the server path, then in-process, each into a fresh result set."""
    results = []
    with tempfile.TemporaryDirectory() as scratch, SleepingServer(latency, "agree") as model:
        folder = Path(scratch)
        dataset = write_questions(folder, questions)
        env = {"SIFT_MODEL": "openai:bench", "SIFT_BASE_URL": model.base_url, "OPENAI_API_KEY": "unused"}
        with langgraph_dev(ROOT, folder / "server.log", env, "--n-jobs-per-worker", str(max(concurrencies))) as url:
            for concurrency in concurrencies:
                out = folder / f"server-{concurrency}"
                results.append(asyncio.run(_server_pass(url, dataset, out, concurrency, latency)))
        for concurrency in concurrencies:
            out = folder / f"local-{concurrency}"
            results.append(asyncio.run(_local_pass(model.base_url, dataset, out, concurrency, latency)))
    return results
