"""Run the zero-shot CoT baseline and SIFT on every question, resumably and concurrently.

Per (question, sample) both methods run on the same model; the record keeps each
method's answer and grade, the round SIFT agreed in, and SIFT's calls and tokens split
by stage, so that a report can rebuild the paper's "after stage k" columns without
running anything again.

The baseline is the graph's own fallback node (`direct_answer`) in a one-node graph: the
same prompt, the same call path and the same retry policy as SIFT's fallback.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO

from langgraph.graph import END, START, StateGraph

from sift_graph.answers import answers_agree
from sift_graph.context import SiftContext
from sift_graph.evaluation.datasets import Question
from sift_graph.evaluation.results import ResultStore, record_key
from sift_graph.faults import describe_fault
from sift_graph.graph import MODEL_RETRY, build_sift_graph
from sift_graph.nodes import STEPS, ModelNode
from sift_graph.state import OUTPUT_KEYS, RoleUsage, RoundRecord, SiftInput, SiftOutput, SiftState

STAGE_OF_ROUND_KIND = {"sticker": 1, "forward": 2, "inverse": 3}
"""Stage 1 is the first round, 2 forward optimization, 3 inverse generation (+FO)."""
STAGES = (1, 2, 3)
FALLBACK = "fallback"


def build_cot_graph() -> StateGraph:
    """The zero-shot CoT baseline: SIFT's fallback node alone. Uncompiled, like SIFT's."""
    builder = StateGraph(SiftState, context_schema=SiftContext, input_schema=SiftInput, output_schema=SiftOutput)
    builder.add_node("direct_answer", ModelNode("direct_answer", STEPS["direct_answer"]), retry_policy=MODEL_RETRY)
    builder.add_edge(START, "direct_answer")
    builder.add_edge("direct_answer", END)
    return builder


# --- accounting: small pure functions over graph output -------------------------------


def empty_cost() -> dict[str, int]:
    return {"calls": 0, "input_tokens": 0, "output_tokens": 0}


def add_usage(cost: dict[str, int], usage: dict[str, RoleUsage]) -> dict[str, int]:
    """`cost` plus every role's counters in `usage` (a new dict)."""
    total = dict(cost)
    for counts in usage.values():
        for field in ("calls", "input_tokens", "output_tokens"):
            total[field] += int(counts[field])
    return total


def usage_by_round(updates: Iterable[tuple[str, dict[str, Any]]]) -> dict[int | str, dict[str, int]]:
    """Attribute each model call to its round (or to the fallback), from the graph's
    `updates` stream in order. A call belongs to the round whose consensus check has
    not happened yet: an inverse or forward sticker prepares the round after the last check."""
    costs: dict[int | str, dict[str, int]] = {}
    current = 1
    for node, update in updates:
        if not isinstance(update, dict):
            continue
        if update.get("usage"):
            where: int | str = FALLBACK if node == "direct_answer" else current
            costs[where] = add_usage(costs.get(where, empty_cost()), update["usage"])
        current += len(update.get("rounds") or [])
    return costs


def usage_by_stage(round_costs: dict[int | str, dict[str, int]], rounds: Sequence[RoundRecord]) -> dict[str, dict[str, int]]:
    """Round costs summed per stage ("1", "2", "3") plus the fallback."""
    kinds = {record["round"]: record["kind"] for record in rounds}
    stages = {str(stage): empty_cost() for stage in STAGES} | {FALLBACK: empty_cost()}
    for where, cost in round_costs.items():
        key = FALLBACK if where == FALLBACK else str(STAGE_OF_ROUND_KIND[kinds[where]])
        stages[key] = {field: stages[key][field] + cost[field] for field in cost}
    return stages


def exit_stage(output: dict[str, Any]) -> int | None:
    """The stage SIFT stopped at with a consensus answer, or None for the fallback."""
    agreed = output.get("consensus_round")
    if agreed is None:
        return None
    kind = next(record["kind"] for record in output["rounds"] if record["round"] == agreed)
    return STAGE_OF_ROUND_KIND[kind]


def method_result(answer: str | None, gold: str, cost: dict[str, int], comparator: str) -> dict[str, Any]:
    """Grade an answer against the gold one, with consensus's own equivalence."""
    return {"answer": answer, "correct": answers_agree(gold, answer, comparator), **cost}  # type: ignore[arg-type]


def build_record(
    question: Question,
    sample: int,
    cot_output: dict[str, Any],
    sift_output: dict[str, Any],
    round_costs: dict[int | str, dict[str, int]],
    comparator: str,
) -> dict[str, Any]:
    """The stored result of one (question, sample); see `summary` for how it is read."""
    rounds = sift_output.get("rounds") or []
    return {
        "status": "ok",
        "cot": method_result(cot_output.get("answer"), question.answer, add_usage(empty_cost(), cot_output.get("usage") or {}), comparator),
        "sift": {
            **method_result(sift_output.get("answer"), question.answer, add_usage(empty_cost(), sift_output.get("usage") or {}), comparator),
            "consensus_round": sift_output.get("consensus_round"),
            "exit_stage": exit_stage(sift_output),
        },
        "stage_costs": usage_by_stage(round_costs, rounds),
        "rounds": [
            {
                "round": record["round"],
                "kind": record["kind"],
                "answers": [record["predict_sticker"]["answer"], record["predict_query_sticker"]["answer"]],
                "agreed": record["agreed"],
            }
            for record in rounds
        ],
    }


# --- running ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    question: Question
    sample: int

    def key(self) -> tuple[str, int, str]:
        return self.question.id, self.sample, self.question.sha


async def run_sift(graph: Any, question: str, context: SiftContext) -> tuple[dict[str, Any], dict[int | str, dict[str, int]]]:
    """SIFT's output and its per-round costs, read off one `astream` run."""
    updates: list[tuple[str, dict[str, Any]]] = []
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream({"question": question}, context=context, stream_mode=["updates", "values"]):
        if mode == "updates":
            updates.extend(chunk.items())
        else:
            final = {key: chunk.get(key) for key in OUTPUT_KEYS}
    return final, usage_by_round(updates)


async def evaluate_one(task: Task, sift_graph: Any, cot_graph: Any, context: SiftContext) -> dict[str, Any]:
    """The record of one (question, sample): CoT and SIFT side by side, or the error.

    The two methods run concurrently: against a served model they are independent requests.
    A TaskGroup (not gather) so that when one fails the other is cancelled, instead of
    running on unseen beside the next question and breaking the concurrency bound.
    """
    started = time.monotonic()
    try:
        async with asyncio.TaskGroup() as group:
            cot = group.create_task(cot_graph.ainvoke({"question": task.question.question}, context=context))
            sift = group.create_task(run_sift(sift_graph, task.question.question, context))
        sift_output, round_costs = sift.result()
        body = build_record(task.question, task.sample, cot.result(), sift_output, round_costs, context.comparator)
    except* Exception as group_error:  # one bad question must not stop the run; a rerun retries it
        body = {"status": "error", "error": "; ".join(describe_fault(exc) for exc in group_error.exceptions)}
    return {
        "id": task.question.id,
        "sample": task.sample,
        "question_sha": task.question.sha,
        "gold": task.question.answer,
        **body,
        "seconds": round(time.monotonic() - started, 3),
        "finished_at": time.time(),
    }


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


class _Tally:
    """Running accuracy for the progress bar, over this result set's records."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self.graded = self.cot = self.sift = self.errors = 0
        for record in records:
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        if record["status"] != "ok":
            self.errors += 1
            return
        self.graded += 1
        self.cot += bool(record["cot"]["correct"])
        self.sift += bool(record["sift"]["correct"])

    def postfix(self) -> str:
        if not self.graded:
            return f"errors={self.errors}"
        return f"CoT {100 * self.cot / self.graded:.1f}%  SIFT {100 * self.sift / self.graded:.1f}%  errors={self.errors}"


async def run_eval(
    questions: Sequence[Question],
    *,
    store: ResultStore,
    context: SiftContext,
    samples: int = 1,
    concurrency: int = 4,
    progress: TextIO | None = sys.stderr,
) -> RunOutcome:
    """Evaluate every (question, sample) not yet in `store`, at most `concurrency` at a time.

    `context.model` should be a loaded model (or a spec): every task shares it.
    """
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
    sift_graph, cot_graph = build_sift_graph().compile(), build_cot_graph().compile()
    queue: asyncio.Queue[Task] = asyncio.Queue()
    for task in tasks:
        queue.put_nowait(task)
    outcome = RunOutcome(store.path, len(wanted), len(wanted) - len(tasks), 0, 0, None)
    bar = tqdm(total=len(wanted), initial=outcome.skipped, file=progress, unit="q", disable=progress is None,
               desc=store.dataset, dynamic_ncols=True, mininterval=0.5)
    bar.set_postfix_str(tally.postfix(), refresh=False)

    async def worker() -> None:
        while True:
            try:
                task = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            record = await evaluate_one(task, sift_graph, cot_graph, context)
            record.update(dataset=store.dataset, config=store.config.digest(), session=session, session_started=session_started)
            store.append(record)  # durable before the bar moves: what is shown is saved
            tally.add(record)
            outcome.finished += 1
            if record["status"] != "ok":
                outcome.errors += 1
                outcome.first_error = outcome.first_error or record["error"]
            bar.set_postfix_str(tally.postfix(), refresh=False)
            bar.update(1)

    try:
        with store:
            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(tasks)))))
    finally:
        bar.close()
    return outcome
