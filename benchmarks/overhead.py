"""Orchestration overhead: SIFT as a graph vs the same cascade as a plain function.

Both run the same instant scripted model, prompts and checks, so the difference is what
the graph adds: state, channels, tasks, checkpoints. Reported as extra milliseconds per
model call, measured in interleaved batches (plain, graph, plain, graph, ...) and taken
as the median batch so that a noisy neighbour does not decide the number.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.workloads import CALLS, aplain_sift, plain_sift, script
from sift_graph import build_sift_graph
from sift_graph.checkpoints import aopen_checkpointer, aopen_sqlite_saver, open_checkpointer
from sift_graph.context import SiftContext
from sift_graph.testing import QUESTION, ScriptedChatModel

# The mode the CLI runs under (sift_graph.checkpoints.RUN_DURABILITY on main): every
# step's checkpoint is written before the next step starts, so a finished model call
# is never lost to a crash.
DURABILITY = "sync"

# The async path's SQLite store through LangGraph's own AsyncSqliteSaver (what `sift serve`
# uses) instead of the in-place SqliteFileSaver that `aopen_checkpointer` gives: the
# comparison behind keeping the latter for one run per process.
AIOSQLITE = "sqlite via AsyncSqliteSaver"
KINDS = ("none", "memory", "sqlite", AIOSQLITE, "postgres")

TARGETS_MS = {"none": None, "memory": 0.5, "sqlite": 1.5, "postgres": 3.0, AIOSQLITE: None}


@dataclass
class OverheadResult:
    path: str
    checkpointer: str
    plain_ms: float  # per question
    graph_ms: float  # per question
    extra_ms_per_call: float
    target_ms: float | None
    extra_cpu_ms_per_call: float = 0.0  # the same in process CPU time: steadier on a busy machine
    skipped: str | None = None
    # extra_ms_per_call less the LangGraph floor (the canned graph, in-memory saver) timed
    # in the same interleaved batches: the SIFT share, steady when the machine is not.
    over_floor_ms_per_call: float | None = None


def _setting(kind: str, folder: Path, postgres_url: str | None) -> str | None:
    sqlite = str(folder / f"bench-{kind.split()[-1]}.sqlite")
    return {"none": None, "memory": "memory", "sqlite": sqlite, AIOSQLITE: sqlite, "postgres": postgres_url}[kind]


def _model(workload: str) -> ScriptedChatModel:
    return ScriptedChatModel(script=script(workload))


def measure_sync(kind: str, setting: str | None, workload: str, batch: int, repeats: int) -> OverheadResult:
    calls = CALLS[workload]
    with ExitStack() as stack:
        saver = stack.enter_context(open_checkpointer(setting)) if setting else None
        graph = build_sift_graph().compile(checkpointer=saver)
        options: dict[str, Any] = {"durability": DURABILITY} if saver else {}

        def run_graph() -> None:
            # A fresh model per question: scripted replies are used in order per model.
            context = SiftContext(model=_model(workload))
            config = {"configurable": {"thread_id": uuid.uuid4().hex}} if saver else None
            graph.invoke({"question": QUESTION}, config, context=context, **options)

        def run_plain() -> None:
            model = _model(workload)
            plain_sift(model, QUESTION, SiftContext(model=model))

        for warm in (run_plain, run_graph):
            for _ in range(3):
                warm()
        times: dict[Any, list[tuple[float, float]]] = {run_plain: [], run_graph: []}
        for _ in range(repeats):
            for runner in (run_plain, run_graph):
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(batch):
                    runner()
                times[runner].append(((time.perf_counter() - wall) / batch, (time.process_time() - cpu) / batch))
    return _result("sync", kind, times[run_plain], times[run_graph], calls)


async def measure_async(kind: str, setting: str | None, workload: str, batch: int, repeats: int) -> OverheadResult:
    calls = CALLS[workload]
    async with AsyncExitStack() as stack:
        opener = aopen_sqlite_saver if kind == AIOSQLITE else aopen_checkpointer
        saver = await stack.enter_async_context(opener(setting)) if setting else None
        graph = build_sift_graph().compile(checkpointer=saver)
        options: dict[str, Any] = {"durability": DURABILITY} if saver else {}

        async def run_graph() -> None:
            context = SiftContext(model=_model(workload))
            config = {"configurable": {"thread_id": uuid.uuid4().hex}} if saver else None
            await graph.ainvoke({"question": QUESTION}, config, context=context, **options)

        async def run_plain() -> None:
            model = _model(workload)
            await aplain_sift(model, QUESTION, SiftContext(model=model))

        # A checkpointed row times the floor (memory saver) in the same batches beside it.
        runners = [run_plain, run_graph, *([await floor_runner(workload, memory=True)] if saver else [])]
        for warm in runners:
            for _ in range(3):
                await warm()
        times: dict[Any, list[tuple[float, float]]] = {runner: [] for runner in runners}
        for _ in range(repeats):
            for runner in runners:
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(batch):
                    await runner()
                times[runner].append(((time.perf_counter() - wall) / batch, (time.process_time() - cpu) / batch))
    floor = times[runners[2]] if saver else None
    return _result("async", kind, times[run_plain], times[run_graph], calls, floor)


def _result(
    path: str,
    kind: str,
    plain: list[tuple[float, float]],
    graph: list[tuple[float, float]],
    calls: int,
    floor: list[tuple[float, float]] | None = None,
) -> OverheadResult:
    # Pair each graph batch with the plain batch just before it, then take the median.
    extra = statistics.median((g[0] - p[0]) / calls for p, g in zip(plain, graph, strict=True))
    over_floor = (
        None
        if floor is None
        else statistics.median((g[0] - p[0] - f[0]) / calls for p, g, f in zip(plain, graph, floor, strict=True))
    )
    extra_cpu = statistics.median((g[1] - p[1]) / calls for p, g in zip(plain, graph, strict=True))
    return OverheadResult(
        path=path,
        checkpointer=kind,
        plain_ms=statistics.median(p[0] for p in plain) * 1000,
        graph_ms=statistics.median(g[0] for g in graph) * 1000,
        extra_ms_per_call=extra * 1000,
        target_ms=TARGETS_MS[kind],
        extra_cpu_ms_per_call=extra_cpu * 1000,
        over_floor_ms_per_call=None if over_floor is None else over_floor * 1000,
    )


def canned_graph(workload: str):
    """The SIFT graph's shape, state and routing with every node replaced by an async
    function returning the update the real node returned in a recorded run: what
    LangGraph itself costs for this run, with no model call and no SIFT node code."""
    from langgraph.graph import StateGraph
    from langgraph.types import Command

    from sift_graph.graph import AFTER_CONSENSUS, add_sift_edges, next_step
    from sift_graph.state import SiftInput, SiftOutput, SiftState
    from sift_graph.steps import STEPS

    recorded: dict[str, list[dict]] = {name: [] for name in [*STEPS, "check_consensus"]}
    graph = build_sift_graph().compile()
    for _, chunk in graph.stream(
        {"question": QUESTION}, context=SiftContext(model=_model(workload)), stream_mode=["updates"]
    ):
        for node, update in chunk.items():
            if node in recorded:
                recorded[node].append(update)

    def canned(name: str):
        async def node(state: SiftState) -> Any:
            updates = recorded[name]
            done = len(state.get("rounds") or [])
            # Rounds repeat the predictions and the check; forward runs twice (the second
            # time after an inverse round); the rest run once.
            if name.startswith("predict"):
                return updates[min(done, len(updates) - 1)]
            if name == "check_consensus":  # it routes itself, as the real node does
                update = updates[min(done, len(updates) - 1)]
                return Command(update=update, goto=next_step([*state.get("rounds", []), *update["rounds"]], 1, 1))
            return updates[min(done - 1, len(updates) - 1)] if name == "forward_optimize" else updates[0]

        return node

    builder = StateGraph(SiftState, context_schema=SiftContext, input_schema=SiftInput, output_schema=SiftOutput)
    for name in recorded:
        builder.add_node(name, canned(name), destinations=AFTER_CONSENSUS if name == "check_consensus" else ())
    add_sift_edges(builder)
    return builder


async def floor_runner(workload: str = "cascade", memory: bool = False) -> Callable[[], Awaitable[Any]]:
    """One question through the canned graph (async path; no checkpointer, or the in-memory
    one with durability='sync'), checked first to replay the recorded run."""
    from langgraph.checkpoint.memory import InMemorySaver

    graph = canned_graph(workload).compile(checkpointer=InMemorySaver() if memory else None)
    context = SiftContext()
    options: dict[str, Any] = {"durability": DURABILITY} if memory else {}

    async def run() -> Any:
        config = {"configurable": {"thread_id": uuid.uuid4().hex}} if memory else None
        return await graph.ainvoke({"question": QUESTION}, config, context=context, **options)

    result = await run()
    if len(result["rounds"]) != len(
        build_sift_graph()
        .compile()
        .invoke({"question": QUESTION}, context=SiftContext(model=_model(workload)))["rounds"]
    ):
        raise RuntimeError("the canned graph did not replay the recorded run")
    return run


async def measure_floor(workload: str = "cascade", batch: int = 10, repeats: int = 7, memory: bool = False) -> float:
    """Median ms per model call of the canned graph (see `floor_runner`): the part of the
    overhead that is LangGraph's own, before any SIFT code runs."""
    run = await floor_runner(workload, memory)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(batch):
            await run()
        times.append((time.perf_counter() - started) / batch)
    return statistics.median(times) * 1000 / CALLS[workload]


def postgres_available(url: str | None) -> str | None:
    """None when the server answers, else why not."""
    if not url:
        return "no PostgreSQL URL ($SIFT_BENCH_POSTGRES_URL or --postgres)"
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as exc:  # any failure to reach it means: skip, and say why
        return f"PostgreSQL unreachable: {type(exc).__name__}"


def run(
    *,
    paths: tuple[str, ...],
    kinds: tuple[str, ...],
    postgres_url: str | None,
    workload: str = "cascade",
    batch: int = 20,
    repeats: int = 7,
) -> list[OverheadResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="sift-bench-") as folder:
        for path in paths:
            for kind in kinds:
                if kind == AIOSQLITE and path == "sync":
                    continue  # an async saver only
                if kind == "postgres" and (why := postgres_available(postgres_url)):
                    results.append(OverheadResult(path, kind, 0, 0, 0, TARGETS_MS[kind], skipped=why))
                    continue
                setting = _setting(kind, Path(folder) / path, postgres_url)
                (Path(folder) / path).mkdir(exist_ok=True)
                if path == "sync":
                    results.append(measure_sync(kind, setting, workload, batch, repeats))
                else:
                    results.append(asyncio.run(measure_async(kind, setting, workload, batch, repeats)))
    return results
