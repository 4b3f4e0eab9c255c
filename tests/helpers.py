"""Helpers shared by the test modules (fixtures live in conftest.py; the scripted
question, stickers and scripts in `sift_graph.testing`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from langgraph.types import RetryPolicy, StateSnapshot
from pydantic import PrivateAttr

from sift_graph import SiftContext
from sift_graph.evaluation.consistency import is_self_consistency
from sift_graph.evaluation.datasets import Question
from sift_graph.evaluation.results import EvalConfig, ResultSet, load_result_sets
from sift_graph.faults import is_transient_fault
from sift_graph.state import ROLES, role_of_tags
from sift_graph.testing import (
    FORWARD_STICKER,
    INVERSE_STICKER,
    QUESTION,
    REFINED_STICKER,
    STICKER,
    ScriptedChatModel,
    boxed,
    script_for,
)
from sift_graph.testing.langgraph_dev import answers, free_port

ROOT = Path(__file__).resolve().parent.parent

INVENTING_STICKER = (
    "**Conditions:**\n1. Ann has 3 apples.\n2. Ann buys 2 more apples.\n3. Together that is 5 apples.\n"
    "4. Each apple weighs 150 grams.\n**Question:** How many apples does Ann have in total?"
)
"""A forward-optimized sticker with two conditions the question's numbers do not back (5, 150)."""

COMMITTED_RESULTS = ROOT / "results" / "gsm8k-qwen2.5-coder-1.5b"
"""The committed real-model run: the paper's method, greedy, and the sets made beside it
(self-consistency samples, variants) that pair with it question by question."""

POSTGRES_URL_ENV = "SIFT_TEST_POSTGRES_URL"

EVERY_STAGE = script_for(["1", "2", "3"], ["4", "5", "6"], direct="9")
"""Every round disagrees: a run passes through every stage and ends in the fallback (answer 9)."""


STAGE_TEXT = re.compile(rf"\[round \d+\] ({'|'.join(ROLES)}): ")
"""How a stage's own tokens open in `sift serve`'s reasoning (its event line names its kind instead)."""

AGREE_ON_18 = {
    "sticker": STICKER,
    "forward": FORWARD_STICKER,
    "inverse": INVERSE_STICKER,
    "predict_sticker": boxed("18"),
    "predict_query_sticker": boxed("18"),
    "direct": boxed("3"),
}
"""Every question agrees at stage 1 on 18; the CoT answer is always 3 (on the GSM8K sample
of tests/data, 18 is right for the first question only, 3 for the second only)."""


FAST_RETRY = RetryPolicy(
    max_attempts=4, initial_interval=0.01, backoff_factor=1.0, jitter=False, retry_on=is_transient_fault
)
"""The model nodes' retry policy, its waits shortened for tests."""


def flatten(script: dict[str, Any]) -> dict[str, str]:
    """The fault server answers each role with one reply: the first of a scripted list."""
    return {role: replies[0] if isinstance(replies, list) else replies for role, replies in script.items()}


def postgres_url() -> str:
    """The test PostgreSQL server's URL (scripts/test starts one), else `unavailable`."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        unavailable(f"no PostgreSQL server: set {POSTGRES_URL_ENV} (scripts/test does)")
    return url


def unavailable(missing: str) -> NoReturn:
    """A real part a test needs is missing: skip it on a developer's machine, fail it in CI
    (CI=true, which .ci/run sets), where a skip would pass for a tested path."""
    if os.environ.get("CI") == "true":
        pytest.fail(missing)
    pytest.skip(missing)


def unsaved_tasks(snapshot: StateSnapshot) -> int:
    """Tasks of the snapshot's step whose writes are not saved yet (not finished, or
    finished but not yet written), counted inside running subgraphs too (a snapshot
    read with `subgraphs=True`)."""
    return sum(
        unsaved_tasks(task.state) if isinstance(task.state, StateSnapshot) else int(task.result is None)
        for task in snapshot.tasks
    )


class BrokenModel(ScriptedChatModel):
    """Its first `broken_role` call fails (a ConnectionError), but only once every other
    task of that step has saved its writes (`settled`, polled with a deadline): a call
    still in flight when a run stops may be made again on resume (LangGraph cannot save
    a write once it is stopping), and the fake's replies go by call order."""

    broken_role: str
    settled: Callable[[], bool]
    _broken: bool = PrivateAttr(default=False)
    _broken_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _breaks_now(self, run_manager: Any) -> bool:
        """Whether this is the call that fails (the first of `broken_role`)."""
        with self._broken_lock:
            first = role_of_tags(list(run_manager.tags)) == self.broken_role and not self._broken
            self._broken = self._broken or first
        return first

    def _wait_for_the_step(self) -> None:
        wait_until(self.settled, f"the tasks beside the broken {self.broken_role} call to save their writes", 30)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if self._breaks_now(run_manager):
            self._wait_for_the_step()
        return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        if self._breaks_now(run_manager):
            # A thread of its own, so the event loop runs the sibling tasks meanwhile.
            await asyncio.to_thread(self._wait_for_the_step)
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


def broken_model(broken_role: str, graph: Any, config: dict[str, Any]) -> BrokenModel:
    """The model whose first `broken_role` call fails, in the run of `graph` (compiled
    with a checkpointer) on thread `config`, once the rest of its step is saved."""
    return BrokenModel(
        script=EVERY_STAGE,
        failures={broken_role: 1},
        broken_role=broken_role,
        settled=lambda: unsaved_tasks(graph.get_state(config, subgraphs=True)) == 1,
    )


def answer_cli_with(monkeypatch: pytest.MonkeyPatch, model: object) -> None:
    """Make every model spec the `sift` CLI resolves answer with `model`."""
    monkeypatch.setattr("sift_graph.cli.common.resolve_model", lambda spec, connection=None, options=None: model)


# --- real `sift` processes running the scripted model -----------------------------------


def start_sift(*args: str, **popen: Any) -> subprocess.Popen[str]:
    """`sift ARGS` in a process of its own (this checkout's code), output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "sift_graph.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **popen.pop("env", {})},
        **popen,
    )


def finished(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """The JSON result of a `sift solve --json` process that must succeed."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def scripted_spec(folder: Path, name: str, script: dict[str, Any] = EVERY_STAGE, **settings: Any) -> str:
    """A `scripted:<file>` model spec, the file written with `script` and the
    ScriptedChatModel `settings` (latency, hold, call_log, ...)."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"script": script, **settings}), encoding="utf-8")
    return f"scripted:{path}"


def log_of(path: Path) -> list[dict[str, Any]]:
    """The scripted model's call log (`call_log`): start/finish/cancel lines."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def counts(entries: list[dict[str, Any]], event: str) -> Counter[str]:
    return Counter(entry["role"] for entry in entries if entry["event"] == event)


def wait_for_call(log: Path, role: str, call: int, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until `process` has started call number `call` of `role` (by its call log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e == {"event": "start", "role": role, "call": call, "pid": process.pid} for e in log_of(log)):
            return
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.05)
    raise AssertionError(f"the run never reached call {call} of {role}")


# --- servers on loopback ------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.02)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """An ASGI app served by uvicorn (lifespan on) on a free loopback port, in a thread
    of this process; yields the OpenAI base URL (http://127.0.0.1:PORT/v1)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start")
    if not server.started:
        raise RuntimeError("uvicorn did not start (see the log above)")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def sift_process(
    command: str, *args: str, log: os.PathLike[str], ready: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Any]]:
    """`sift COMMAND ARGS` (a server: serve, view) in its own process on a free loopback
    port, its output in `log`; yields (its root URL, process) once `ready` (a path) answers.
    Stopped with Ctrl-C (SIGINT) at the end."""
    port = free_port()
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "sift_graph.cli", command, "--port", str(port), *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url + ready) or process.poll() is not None, f"sift {command} to listen", 60)
        if process.poll() is not None:
            raise RuntimeError(f"sift {command} exited with {process.returncode}: {Path(log).read_text()[-2000:]}")
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def sift_serve(*args: str, log: os.PathLike[str], env: dict[str, str] | None = None) -> Iterator[tuple[str, Any]]:
    """`sift serve ARGS` (`sift_process`); yields (OpenAI base URL, process)."""
    with sift_process("serve", *args, log=log, ready="/v1/models", env=env) as (url, process):
        yield f"{url}/v1", process


@contextmanager
def langgraph_dev(log: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """`langgraph dev ARGS` serving this checkout's langgraph.json on a free loopback port
    (`sift_graph.testing.langgraph_dev`); yields its URL."""
    from sift_graph.testing.langgraph_dev import langgraph_dev as start

    with start(ROOT, log, env, *args) as url:
        yield url


TOY_QUESTIONS = [
    Question("q1", "Ann has 5 pears. How many pears?", "5"),
    Question("q2", "Bo has 7 figs. How many figs?", "7"),
    Question("q3", "Cy has 2 plums. How many plums?", "2"),
]


def staged_model(**kwargs: Any) -> ScriptedChatModel:
    """Run one question at a time, q1 agrees in round 1, q2 in round 2, q3 never (fallback).

    Replies are consumed in call order per role: CoT answers 4 (wrong), 7, 2, and q3's
    fallback reuses its CoT answer. Each forward optimization returns a new sticker.
    """
    return ScriptedChatModel(
        script={
            "sticker": STICKER,
            "forward": [FORWARD_STICKER, REFINED_STICKER, FORWARD_STICKER],
            "inverse": INVERSE_STICKER,
            "predict_sticker": [boxed(a) for a in ["5", "4", "7", "1", "2", "3"]],
            "predict_query_sticker": [boxed(a) for a in ["5", "3", "7", "9", "8", "6"]],
            "direct": [boxed(a) for a in ["4", "7", "2", "2"]],
        },
        **kwargs,
    )


def toy_config(**overrides: Any) -> EvalConfig:
    """The config of a toy result set (a scripted model; prompts named \"p\")."""
    settings = dict(
        model="scripted",
        base_url=None,
        max_tokens=64,
        temperature=0.0,
        top_p=None,
        forward_rounds=1,
        inverse_rounds=1,
        comparator="math",
    )
    return EvalConfig(settings=settings | overrides, prompts="p")


def rival_model() -> ScriptedChatModel:
    """Another method on the toy questions: each question disagrees in round 1 and agrees
    on 7 in round 2 (right for q2 only, after forward optimization); CoT always answers
    5 (right for q1 only)."""
    return ScriptedChatModel(
        script={
            "sticker": STICKER,
            "forward": [FORWARD_STICKER, REFINED_STICKER, FORWARD_STICKER],
            "inverse": INVERSE_STICKER,
            "predict_sticker": [boxed(a) for a in ["4", "7"] * 3],
            "predict_query_sticker": [boxed(a) for a in ["3", "7"] * 3],
            "direct": boxed("5"),
        }
    )


async def write_toy_result_sets(folder: Path) -> tuple[str, str]:
    """Two result sets of the toy questions in `folder` (the staged model's, then the
    rival's); their ids, as `sift view` names them (`<dataset>-<digest>`)."""
    from sift_graph.context import SiftContext
    from sift_graph.evaluation.results import ResultStore
    from sift_graph.evaluation.runner import run_eval

    ids = []
    for model, max_tokens in ((staged_model(), 64), (rival_model(), 65)):
        store = ResultStore(folder, "toy", toy_config(max_tokens=max_tokens))
        await run_eval(TOY_QUESTIONS, store=store, context=SiftContext(model=model), concurrency=1, progress=None)
        ids.append(store.path.stem)
    return ids[0], ids[1]


def committed_paper_set() -> ResultSet:
    """The committed SIFT records made with the paper's method (no variant setting), out of
    the result sets beside them."""
    (paper,) = [
        result_set
        for result_set in load_result_sets(COMMITTED_RESULTS)
        if not is_self_consistency(result_set)
        and result_set.config.get("sticker_check", "none") == "none"
        and result_set.config.get("fallback_answer", "cot") == "cot"
        and (result_set.config["forward_rounds"], result_set.config["inverse_rounds"]) == SiftContext().round_budget
    ]
    return paper


def unsettled_record(
    question_id: str, query_sticker_answers: list[str], gold: str = "5", stickers: Sequence[str] | None = None
) -> dict[str, Any]:
    """A stored record of `QUESTION` that no round settled: CoT said 4 (the fallback), round
    k's P_QS said query_sticker_answers[k] (from stickers[k], when given); each round cost
    60 tokens, the CoT call 20."""
    kinds = ["sticker", "forward", "inverse"]
    cost = {"calls": 3, "input_tokens": 30, "output_tokens": 30}
    rounds: list[dict[str, Any]] = [
        {"round": k + 1, "kind": kind, "answers": ["1", answer], "agreed": False}
        for k, (kind, answer) in enumerate(zip(kinds, query_sticker_answers, strict=True))
    ]
    for sift_round, sticker in zip(rounds, stickers or [], strict=False):
        sift_round["sticker"] = sticker
    return {
        "id": question_id,
        "sample": 0,
        "question": QUESTION,
        "question_sha": "sha",
        "gold": gold,
        "status": "ok",
        "cot": {"answer": "4", "correct": False, "calls": 1, "input_tokens": 10, "output_tokens": 10},
        "sift": {"answer": "4", "correct": False, "exit_stage": None, "consensus_round": None},
        "stage_costs": {
            "1": cost,
            "2": cost,
            "3": cost,
            "fallback": {"calls": 0, "input_tokens": 0, "output_tokens": 0},
        },
        "rounds": rounds,
    }
