"""Run the zero-shot CoT baseline and SIFT on every question, resumably and concurrently.

Per (question, sample) both methods run on the same model; the record keeps each
method's answer and grade, the round SIFT agreed in, and SIFT's calls and tokens split
by stage, so that a report can rebuild the paper's "after stage k" columns without
running anything again.

The baseline is the graph's own fallback node (`direct_answer`) in a one-node graph: the
same prompt, the same call path and the same retry policy as SIFT's fallback. It runs
first, and its reply is SIFT's fallback (`SiftInput.fallback`), as in the paper's
reference: a question SIFT cannot settle makes no second, identical direct call.

Self-consistency's samples (`run_eval(..., self_consistency=True)`) are the baseline alone,
sample k with seed SEED + k, one record each, in a result set of their own
(`EvalConfig.for_self_consistency`): the report votes over them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from sift_graph.context import SiftContext
from sift_graph.deployment import Deployment
from sift_graph.evaluation.datasets import Question
from sift_graph.evaluation.records import build_record, build_sample_record
from sift_graph.evaluation.results import ResultStore, record_key
from sift_graph.faults import describe_fault, is_unreachable
from sift_graph.graph import MODEL_RETRY, build_sift_graph, context_handling, model_node
from sift_graph.models.decoding import is_sampled
from sift_graph.state import Prediction, RoleUsage, SiftInput, SiftState


class CotOutput(TypedDict):
    answer: str | None
    response: str
    usage: dict[str, RoleUsage]
    fallback: Prediction
    """The baseline's prediction, handed to SIFT as its fallback."""


def build_cot_graph(
    *, deployment: Deployment | None = None
) -> StateGraph[SiftState, SiftContext, SiftInput, CotOutput]:
    """The zero-shot CoT baseline: SIFT's fallback node alone. Uncompiled, like SIFT's, and
    served like it with a `deployment` (see `build_sift_graph`)."""
    schema, resolve = context_handling(deployment)
    builder = StateGraph(SiftState, context_schema=schema, input_schema=SiftInput, output_schema=CotOutput)
    # The baseline: a plain chain-of-thought answer (SIFT's own fallback call).
    builder.add_node("direct_answer", model_node("direct_answer", resolve), retry_policy=MODEL_RETRY)
    builder.add_edge(START, "direct_answer")
    builder.add_edge("direct_answer", END)
    return builder


# --- running ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    question: Question
    sample: int

    def key(self) -> tuple[str, int, str]:
        return self.question.id, self.sample, self.question.sha


def sample_context(context: SiftContext, sample: int) -> SiftContext:
    """The context of sample `sample`: sampled runs get seed SEED + sample (SEED 0 when
    unset), so samples are independent, reproducible, and never share a cached call."""
    if not is_sampled(context.temperature):
        return context
    return dataclasses.replace(context, seed=(context.seed or 0) + sample)


def error_body(exc: BaseException) -> dict[str, Any]:
    """What a record of a (question, sample) that failed keeps: one line, and whether the
    model server could not be reached at all (several in a row stop the run)."""
    return {"status": "error", "error": describe_fault(exc), "unreachable": is_unreachable(exc)}


def task_record(task: Task, body: dict[str, Any], started: float) -> dict[str, Any]:
    """The stored record of `task`: what it is, `body` (`build_record`'s or `error_body`'s)
    and how long it took since `started` (`time.monotonic()`)."""
    return {
        "id": task.question.id,
        "sample": task.sample,
        "question_sha": task.question.sha,
        "question": task.question.question,
        "gold": task.question.answer,
        **body,
        "seconds": round(time.monotonic() - started, 3),
        "finished_at": time.time(),
    }


async def evaluate_one(task: Task, sift_graph: Any | None, cot_graph: Any, context: SiftContext) -> dict[str, Any]:
    """The record of one (question, sample): CoT, then SIFT with the CoT's reply as its
    fallback (no `sift_graph`: the CoT sample alone), or the error (a failed CoT means
    SIFT does not start)."""
    started = time.monotonic()
    context = sample_context(context, task.sample)
    question = task.question.question
    try:
        cot = await cot_graph.ainvoke({"question": question}, context=context)
        if sift_graph is None:
            body = build_sample_record(task.question, cot, context.comparator)
        else:
            sift = await sift_graph.ainvoke({"question": question, "fallback": cot["fallback"]}, context=context)
            body = build_record(task.question, cot, sift, context.comparator)
    except Exception as exc:  # one bad question must not stop the run; a rerun retries it
        body = error_body(exc)
    return task_record(task, body, started)


UNREACHABLE_IN_A_ROW = 3
"""Questions in a row that could not reach the model server before a run stops."""


def pending_tasks(questions: Sequence[Question], samples: int, done: set[tuple[str, int, str]]) -> list[Task]:
    """What a run still has to do, question by question (all samples of one together)."""
    return [
        Task(question, sample)
        for question in questions
        for sample in range(samples)
        if (question.id, sample, question.sha) not in done
    ]


@dataclass
class RunOutcome:
    path: Path
    total: int
    skipped: int
    finished: int
    errors: int
    first_error: str | None
    stopped: str | None = None
    """Why the run stopped before its last question (the model server is gone), else None."""

    @property
    def left(self) -> int:
        """Questions this run did not get to (none unless it stopped)."""
        return self.total - self.skipped - self.finished


class _Tally:
    """Running accuracy for the progress bar, over this result set's records."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self.graded = self.cot = self.sift = self.errors = 0
        self.samples_alone = False  # self-consistency's samples: no SIFT to tally
        for record in records:
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        if record["status"] != "ok":
            self.errors += 1
            return
        self.graded += 1
        self.cot += bool(record["cot"]["correct"])
        self.sift += bool((record.get("sift") or {}).get("correct"))
        self.samples_alone = "sift" not in record

    def postfix(self) -> str:
        if not self.graded:
            return f"errors={self.errors}"
        cot = f"CoT {100 * self.cot / self.graded:.1f}%"
        if self.samples_alone:
            return f"{cot} (each sample alone)  errors={self.errors}"
        return f"{cot}  SIFT {100 * self.sift / self.graded:.1f}%  errors={self.errors}"


async def run_eval(
    questions: Sequence[Question],
    *,
    store: ResultStore,
    context: SiftContext,
    samples: int = 1,
    concurrency: int = 4,
    progress: TextIO | None = sys.stderr,
    self_consistency: bool = False,
) -> RunOutcome:
    """Evaluate every (question, sample) not yet in `store`, at most `concurrency` at a time:
    CoT and SIFT, or with `self_consistency` the CoT samples alone (`store` must be the
    result set its configuration names: `EvalConfig.for_self_consistency`).

    `context.model` should be a loaded model (or a spec): every task shares it.
    """
    sift_graph = None if self_consistency else build_sift_graph().compile()
    cot_graph = build_cot_graph().compile()

    async def evaluate(task: Task) -> dict[str, Any]:
        return await evaluate_one(task, sift_graph, cot_graph, context)

    return await run_tasks(
        questions, evaluate, store=store, samples=samples, concurrency=concurrency, progress=progress
    )


async def run_tasks(
    questions: Sequence[Question],
    evaluate: Callable[[Task], Awaitable[dict[str, Any]]],
    *,
    store: ResultStore,
    samples: int = 1,
    concurrency: int = 4,
    progress: TextIO | None = sys.stderr,
) -> RunOutcome:
    """Every (question, sample) not yet in `store` through `evaluate` (which returns its
    `task_record`, never raises), at most `concurrency` at a time, each record stored the
    moment it is made: the loop shared by a local eval and one on a LangGraph server."""
    if concurrency < 1:
        raise ValueError(f"concurrency: expected an integer >= 1, got {concurrency!r}")
    if samples < 1:
        raise ValueError(f"samples: expected an integer >= 1, got {samples!r}")
    from tqdm import tqdm

    existing = store.records()
    done = {record_key(record) for record in existing if record["status"] == "ok"}
    wanted = {(question.id, sample, question.sha) for question in questions for sample in range(samples)}
    tasks = pending_tasks(questions, samples, done)
    tally = _Tally(record for record in existing if record_key(record) in wanted and record["status"] == "ok")
    session, session_started = uuid.uuid4().hex[:12], time.time()
    queue: asyncio.Queue[Task] = asyncio.Queue()
    for task in tasks:
        queue.put_nowait(task)
    outcome = RunOutcome(store.path, len(wanted), len(wanted) - len(tasks), 0, 0, None)
    bar = tqdm(
        total=len(wanted),
        initial=outcome.skipped,
        file=progress,
        unit="q",
        disable=progress is None,
        desc=store.dataset,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    bar.set_postfix_str(tally.postfix(), refresh=False)

    unreachable_in_a_row = 0

    async def worker() -> None:
        nonlocal unreachable_in_a_row
        while outcome.stopped is None:
            try:
                task = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            record = await evaluate(task)
            record.update(
                dataset=store.dataset, config=store.config.digest(), session=session, session_started=session_started
            )
            store.append(record)  # durable before the bar moves: what is shown is saved
            tally.add(record)
            outcome.finished += 1
            if record["status"] != "ok":
                outcome.errors += 1
                outcome.first_error = outcome.first_error or record["error"]
            # A server that is gone would fail every question left in seconds each, burying
            # the run's results under errors: stop, and let a rerun resume once it is back.
            unreachable_in_a_row = unreachable_in_a_row + 1 if record.get("unreachable") else 0
            if unreachable_in_a_row >= UNREACHABLE_IN_A_ROW and outcome.stopped is None:
                outcome.stopped = (
                    f"the last {unreachable_in_a_row} questions in a row could not reach the model server "
                    f"({record['error']})"
                )
            bar.set_postfix_str(tally.postfix(), refresh=False)
            bar.update(1)

    try:
        with store:
            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(tasks)))))
    finally:
        bar.close()
    return outcome
