"""Run an evaluation on a LangGraph server (`sift eval --server URL`).

Each (question, sample) is two background runs on the server, as in a local eval: the
CoT baseline on the `sift_cot` graph, then SIFT on the `sift` graph with the baseline's
reply as its fallback. Each run is a thread of its own, which LangGraph Studio shows
round by round. A run's context holds only the run settings (`run_settings`):
the deployment owns its model, its server, keys and files.

Resumable without repeats: before a run is created, its thread id is appended (fsynced)
to `<result set>.threads` beside the results. A rerun of a killed eval finds the
thread of each run it had started, and joins the run there (still going or finished)
instead of starting another; only a thread with no run yet gets one. A run that ended
in failure on the server is retried on a new thread, `SERVER_ATTEMPTS` runs at most per
eval, then the question is recorded as an error, as a local one is.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sift_graph.context import SiftContext, run_settings
from sift_graph.evaluation.datasets import Question
from sift_graph.evaluation.records import build_record
from sift_graph.evaluation.results import EvalConfig, ResultStore
from sift_graph.evaluation.runner import RunOutcome, Task, error_body, run_tasks, sample_context, task_record

SIFT_GRAPH = "sift"
COT_GRAPH = "sift_cot"
SERVER_ATTEMPTS = 2
"""Runs of one method of one (question, sample) an eval creates at most (one retry)."""
THREADS_SUFFIX = ".threads"
"""JSON lines, one per thread created (not `.jsonl`: the results folder's `*.jsonl` are results)."""
Key = tuple[str, int, str]


class ServerUnusable(Exception):
    """The server cannot run this eval (unreachable, auth refused, no such assistant or
    graph): one line, found before any question starts."""


class ServerRunFailed(Exception):
    """A run ended in failure on the server as many times as an eval tries it."""


@dataclass(frozen=True)
class ServerTarget:
    """Where the runs go: the server and its assistants for SIFT and for the baseline."""

    url: str
    sift_assistant: str
    cot_assistant: str
    label: str
    """What the results' configuration records as the model: the deployment's assistant."""


def server_config(context: SiftContext, target: ServerTarget) -> EvalConfig:
    """The result set's configuration: the run settings that can change an answer, and
    the server's assistant in place of the model the deployment chooses."""
    chosen = run_settings(context)
    settings = {name: value for name, value in context.result_settings().items() if name in chosen}
    return EvalConfig(settings={**settings, "model": target.label})


def open_client(url: str) -> Any:
    """An SDK client (its API key from LANGGRAPH_API_KEY / LANGSMITH_API_KEY, as the SDK
    reads them) that waits as long as a run takes: a join answers when the run ends."""
    from langgraph_sdk import get_client

    # (connect, read, write, pool): no limit on reading a join's answer nor on a pooled connection.
    return get_client(url=url, timeout=(30.0, None, 30.0, None))


async def connect(client: Any, url: str, assistant: str) -> ServerTarget:
    """The target of an eval on `url` with `assistant` (name, id or graph id); raises
    ServerUnusable naming what is wrong, before any run is created."""
    import httpx

    try:
        sift = await find_assistant(client, assistant)
        if sift is None:
            raise ServerUnusable(f"--assistant: the server at {url} has no assistant {assistant!r}")
        if sift["graph_id"] != SIFT_GRAPH:
            raise ServerUnusable(f"--assistant: {assistant!r} runs the graph {sift['graph_id']!r}, not {SIFT_GRAPH!r}")
        cot = await find_assistant(client, COT_GRAPH)
        if cot is None or cot["graph_id"] != COT_GRAPH:
            raise ServerUnusable(
                f"the server at {url} serves no {COT_GRAPH!r} graph (the CoT baseline): "
                "deploy this project's langgraph.json"
            )
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise ServerUnusable(
                f"the server at {url} refused our credentials (HTTP {status}): set LANGGRAPH_API_KEY"
            ) from exc
        raise ServerUnusable(f"the server at {url} answered HTTP {status}: {exc.response.text[:200]}") from exc
    except httpx.HTTPError as exc:
        raise ServerUnusable(f"cannot reach the LangGraph server at {url}: {exc or type(exc).__name__}") from exc
    return ServerTarget(url, sift["assistant_id"], cot["assistant_id"], f"{assistant} on {url}")


async def find_assistant(client: Any, name_or_id: str) -> dict[str, Any] | None:
    """The assistant with this id, else the one with this name, else the graph's own."""
    import httpx

    try:
        if is_uuid(name_or_id):
            return dict(await client.assistants.get(name_or_id))
        for found in await client.assistants.search(name=name_or_id, limit=100):
            if found["name"] == name_or_id:
                return dict(found)
        by_graph = await client.assistants.search(graph_id=name_or_id, limit=100)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code in (404, 422):  # no such assistant, or no such graph
            return None
        raise
    return dict(by_graph[0]) if by_graph else None


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class ThreadJournal:
    """Which thread each (question, sample, method)'s run is on, append-only and fsynced
    before the thread is created; the last line of a key wins (a retry's new thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.threads: dict[tuple[Key, str], str] = {}
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        self._torn_tail = bool(text) and not text.endswith("\n")
        """A crash's partial last line, sealed off before the next line is appended."""
        if text:
            for raw in text.splitlines():
                try:
                    line = json.loads(raw)
                    self.threads[(tuple(line["key"]), line["method"])] = line["thread_id"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line a crash cut short: its thread was never created

    def thread(self, key: Key, method: str) -> str | None:
        return self.threads.get((key, method))

    def new_thread(self, key: Key, method: str) -> str:
        thread_id = str(uuid.uuid4())
        with open(self.path, "a", encoding="utf-8") as journal:
            if self._torn_tail:
                journal.write("\n")
                self._torn_tail = False
            journal.write(json.dumps({"key": list(key), "method": method, "thread_id": thread_id}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        self.threads[(key, method)] = thread_id
        return thread_id


def journal_path(store: ResultStore) -> Path:
    return store.path.with_name(store.path.stem + THREADS_SUFFIX)


def run_failure(run: Mapping[str, Any], joined: Any) -> str:
    """One line on why a run did not succeed, from what joining it returned."""
    error = joined.get("__error__") if isinstance(joined, Mapping) else None
    if isinstance(error, Mapping):
        return f"{error.get('error', 'error')}: {error.get('message', '')}".strip(": ")
    return f"the run ended {run['status']}"


@dataclass
class ServerEval:
    """The runs of one eval on one server."""

    client: Any
    target: ServerTarget
    journal: ThreadJournal
    context: SiftContext
    label: str
    """Thread metadata naming the result set (its file), so an eval's threads can be found."""

    async def values(self, task: Task, method: str, assistant: str, graph_input: dict[str, Any]) -> dict[str, Any]:
        """The final state of `method`'s run of `task`: joined where the journal has one
        started, else created; a failed run is retried on a new thread, within a bound."""
        key = task.key()
        settings = run_settings(sample_context(self.context, task.sample))
        created, failure = 0, ""
        thread_id = self.journal.thread(key, method)
        while True:
            if thread_id is not None and (run := await self.started_run(thread_id)) is not None:
                current = thread_id  # started before (this eval or a killed one): join it
            else:
                if created == SERVER_ATTEMPTS:
                    raise ServerRunFailed(f"{method} run failed on the server {created} times: {failure}")
                current = thread_id or self.journal.new_thread(key, method)
                run = await self.start(current, task, method, assistant, graph_input, settings)
                created += 1
            joined = await self.client.runs.join(current, run["run_id"])
            run = await self.client.runs.get(current, run["run_id"])
            if run["status"] == "success":
                return dict((await self.client.threads.get_state(current))["values"])
            failure = run_failure(run, joined)
            thread_id = None  # a new thread for the next try: a failed thread stays as it ended

    async def started_run(self, thread_id: str) -> dict[str, Any] | None:
        """The run on a journaled thread (None: the thread or its run was never created)."""
        import httpx

        try:
            runs = await self.client.runs.list(thread_id, limit=1)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise
        return dict(runs[0]) if runs else None

    async def start(
        self,
        thread_id: str,
        task: Task,
        method: str,
        assistant: str,
        graph_input: dict[str, Any],
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        metadata = {"sift_eval": self.label, "question": task.question.id, "sample": task.sample, "method": method}
        await self.client.threads.create(thread_id=thread_id, if_exists="do_nothing", metadata=metadata)
        run = await self.client.runs.create(
            thread_id, assistant, input=graph_input, context=settings, multitask_strategy="reject"
        )
        return dict(run)

    async def evaluate(self, task: Task) -> dict[str, Any]:
        """The record of one (question, sample), as `runner.evaluate_one` makes it locally."""
        started = time.monotonic()
        question = task.question.question
        try:
            cot = await self.values(task, "cot", self.target.cot_assistant, {"question": question})
            sift_input = {"question": question, "fallback": cot["fallback"]}
            sift = await self.values(task, "sift", self.target.sift_assistant, sift_input)
            body = build_record(task.question, cot, sift, self.context.comparator)
        except Exception as exc:  # one bad question must not stop the eval; a rerun retries it
            body = error_body(exc)
        return task_record(task, body, started)


async def run_server_eval(
    questions: Sequence[Question],
    *,
    client: Any,
    target: ServerTarget,
    store: ResultStore,
    context: SiftContext,
    samples: int = 1,
    concurrency: int = 4,
    progress: TextIO | None = None,
) -> RunOutcome:
    """Evaluate every (question, sample) not yet in `store` on the server, at most
    `concurrency` runs in flight (one per question: its CoT run, then its SIFT run)."""
    runs = ServerEval(client, target, ThreadJournal(journal_path(store)), context, str(store.path.resolve()))
    return await run_tasks(
        questions, runs.evaluate, store=store, samples=samples, concurrency=concurrency, progress=progress
    )
