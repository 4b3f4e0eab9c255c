"""Memory: peak RSS over 1,000 questions in one process, like one evaluation run.

Runs in a child process of its own (`python -m benchmarks.memory`), so its RSS is the
graph's and not the rest of the benchmark's. Questions go through `ainvoke` 16 at a time
with the instant scripted model (cascade workload: every stage, three rounds of state);
every result is kept, as an evaluation keeps them. RSS is sampled as questions finish;
the growth from question 200 (warm) to the last, per question, should be no more than
the results kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass

from benchmarks.workloads import script
from sift_graph.testing import QUESTION

GROWTH_SLACK_BYTES = 4096  # per question, beyond the results kept (allocator granularity)


@dataclass
class MemoryResult:
    questions: int
    rss_start_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    peak_rss_warm_mb: float
    peak_rss_mb: float
    growth_per_question_kb: float
    result_per_question_kb: float

    @property
    def ok(self) -> bool:
        return self.growth_per_question_kb * 1024 <= self.result_per_question_kb * 1024 + GROWTH_SLACK_BYTES


def _deep_size(item: object, seen: set[int] | None = None) -> int:
    """Bytes of a result's Python objects (dicts, lists, strings), each counted once."""
    seen = set() if seen is None else seen
    if id(item) in seen:
        return 0
    seen.add(id(item))
    size = sys.getsizeof(item)
    if isinstance(item, dict):
        size += sum(_deep_size(key, seen) + _deep_size(value, seen) for key, value in item.items())
    elif isinstance(item, (list, tuple)):
        size += sum(_deep_size(value, seen) for value in item)
    return size


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _measure(questions: int, concurrency: int, warm: int) -> dict:
    from sift_graph import build_sift_graph
    from sift_graph.context import SiftContext
    from sift_graph.testing import ScriptedChatModel

    graph = build_sift_graph().compile()
    start = _rss_bytes()
    results: list[dict] = []
    samples: dict[int, int] = {}
    peaks: dict[int, int] = {}
    pending = iter(range(questions))

    async def worker() -> None:
        for _ in pending:
            context = SiftContext(model=ScriptedChatModel(script=script("cascade")))
            results.append(await graph.ainvoke({"question": QUESTION}, context=context))
            if len(results) % 50 == 0:
                samples[len(results)] = _rss_bytes()
                peaks[len(results)] = _peak_bytes()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    end = _rss_bytes()
    warm_rss = samples.get(warm, start)
    result_bytes = sum(_deep_size(result) for result in results) / len(results)
    return {
        "questions": questions,
        "rss_start_mb": start / 2**20,
        "rss_warm_mb": warm_rss / 2**20,
        "rss_end_mb": end / 2**20,
        "peak_rss_warm_mb": peaks.get(warm, _peak_bytes()) / 2**20,
        "peak_rss_mb": _peak_bytes() / 2**20,
        "growth_per_question_kb": (end - warm_rss) / (questions - warm) / 1024,
        "result_per_question_kb": result_bytes / 1024,
    }


def run(questions: int = 1000, concurrency: int = 16) -> MemoryResult:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "benchmarks.memory",
            "--questions",
            str(questions),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return MemoryResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    warm = min(200, args.questions // 5 // 50 * 50) or 50
    print(json.dumps(asyncio.run(_measure(args.questions, args.concurrency, warm))))


if __name__ == "__main__":
    main()
