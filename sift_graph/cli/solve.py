"""`sift solve`: one question, each stage printed as the graph streams it.

    sift solve "QUESTION" [--model SPEC] [--json] [--max-tokens N] ...
    sift solve --resume THREAD

Every run is checkpointed (by default into `.sift/checkpoints.sqlite`) under a thread id,
printed as the first line, `thread: <id>`, before any model call. `--resume THREAD`
continues an interrupted run with the settings it was started with: finished model
calls are kept, none is made twice. With `--json`, stdout holds only the output as one
JSON object (with `thread_id`) and everything else goes to stderr.

Runs go on the async path, so Ctrl-C cancels the model calls in flight at once (a
second Ctrl-C exits without waiting for anything); what finished is already saved.
A run is held by one process at a time (`locks.run_lock`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TextIO

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from sift_graph.checkpoints import (
    aopen_checkpointer,
    checkpoint_kind,
    default_checkpoints,
    describe_checkpoints,
    sqlite_file,
)
from sift_graph.cli.common import (
    EXIT_INTERRUPTED,
    UsageError,
    add_model_arguments,
    context_from_args,
    load_model_quietly,
    open_call_cache,
    quiet_transformers,
)
from sift_graph.cli.output import format_summary
from sift_graph.cli.run_stream import stream_run
from sift_graph.context import SiftContext
from sift_graph.locks import LockHeld, run_lock
from sift_graph.partials import partials_file
from sift_graph.runs import SETTINGS_METADATA_KEY as SETTINGS_METADATA_KEY  # still public here (tested)
from sift_graph.runs import new_thread_id, run_config, stored_settings_of, thread_config
from sift_graph.state import output_of, run_finished, validate_question

PARTIALS_FILE = "partials.sqlite"
"""Where `sift solve` keeps partial replies by default: beside its SQLite checkpoints."""


def add_solve_command(commands: Any) -> None:
    solve_parser = commands.add_parser("solve", help="answer one question with SIFT, printing each stage")
    solve_parser.add_argument("question", nargs="?", help="the question (or use --file)")
    solve_parser.add_argument("--file", help="read the question from this file ('-' for stdin)")
    solve_parser.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    add_model_arguments(solve_parser, resumable=True)
    solve_parser.add_argument(
        "--checkpoints",
        default=None,
        help="where runs are kept: a SQLite file, a postgresql:// URL or 'memory' "
        "(default $SIFT_CHECKPOINTS, else .sift/checkpoints.sqlite)",
    )
    solve_parser.add_argument(
        "--resume", metavar="THREAD", default=None, help="continue the interrupted run of this thread"
    )
    solve_parser.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="on a terminal, print each stage when it is done instead of its text as it is generated",
    )
    solve_parser.set_defaults(run=solve_command)


def read_question(args: argparse.Namespace) -> str:
    if args.file is not None and args.question is not None:
        raise UsageError("give the question as an argument or with --file, not both")
    if args.file is not None:
        try:
            raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
            text = raw.decode("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read question file {args.file!r}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"cannot read question file {args.file!r}: not UTF-8 text ({exc.reason})") from exc
    elif args.question is not None:
        text = args.question
    else:
        raise UsageError("no question: give it as an argument or with --file")
    try:
        return validate_question(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def checkpoint_setting(args: argparse.Namespace) -> str:
    setting = args.checkpoints or default_checkpoints()
    try:
        checkpoint_kind(setting)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return setting


def open_failure(setting: str, exc: BaseException) -> UsageError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UsageError(f"cannot open checkpoints {describe_checkpoints(setting)!r}: {reason}")


@contextlib.asynccontextmanager
async def opened_checkpoints(setting: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """The saver for `setting`; a store that cannot be opened is bad input, not a crash."""
    import sqlite3

    import psycopg

    async with contextlib.AsyncExitStack() as stack:
        try:
            saver = await stack.enter_async_context(aopen_checkpointer(setting))
        except (OSError, ValueError, sqlite3.Error, psycopg.Error) as exc:
            raise open_failure(setting, exc) from exc
        yield saver


@contextlib.contextmanager
def held_run(setting: str, thread_id: str, resuming: bool) -> Iterator[None]:
    """This process's hold on the run; another process holding it is bad input (exit 2)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_lock(setting, thread_id))
        except LockHeld as exc:
            doing = "resumed" if resuming else "run"
            raise UsageError(f"run {thread_id} is already being {doing} by {exc.by}") from exc
        except OSError as exc:
            raise open_failure(setting, exc) from exc
        yield


def with_partials(context: SiftContext, setting: str) -> SiftContext:
    """Partial replies kept beside SQLite checkpoints unless the run names a place (an
    interrupted call then goes on from its last saved token on --resume)."""
    if (
        partials_file(context.partials, context.cache) is None
        and checkpoint_kind(setting) == "sqlite"
        and sqlite_file(setting) != ":memory:"
    ):
        context.partials = str(Path(sqlite_file(setting)).with_name(PARTIALS_FILE))
    return context


def resume_hint(thread_id: str, setting: str, args: argparse.Namespace) -> str:
    where = "" if args.checkpoints is None else f" --checkpoints {describe_checkpoints(setting)}"
    return f"sift: resume with: sift solve --resume {thread_id}{where}"


def solve_command(args: argparse.Namespace) -> int:
    progress = sys.stderr if args.json else sys.stdout
    return solve(args, sys.stdout, progress)


def solve(args: argparse.Namespace, out: TextIO, progress: TextIO) -> int:
    quiet_transformers()
    setting = checkpoint_setting(args)
    context: SiftContext | None = None
    if args.resume is not None:
        if args.question is not None or args.file is not None:
            raise UsageError("--resume continues a stored run: give no question with it")
        question, thread_id = "", args.resume
        if checkpoint_kind(setting) == "sqlite" and not os.path.exists(sqlite_file(setting)):
            # Opening would create an empty store: resuming must not leave files behind.
            raise UsageError(f"no run with thread {thread_id!r} in {sqlite_file(setting)}: no such file")
    else:
        question, thread_id = read_question(args), new_thread_id()
        context = with_partials(context_from_args(args), setting)  # bad settings: no run at all
        open_call_cache(context)
    print(f"thread: {thread_id}", file=progress, flush=True)
    try:
        result = asyncio.run(solve_run(args, setting, thread_id, question, context, progress))
    except asyncio.CancelledError:  # our Ctrl-C handler cancelled the run
        raise KeyboardInterrupt from None
    if args.json:
        print(json.dumps({"thread_id": thread_id, **result}, ensure_ascii=False), file=out, flush=True)
    return 0


def cancel_on_ctrl_c() -> None:
    """Ctrl-C cancels the run (its model calls with it); a second one exits at once.
    Finished steps and calls are in the checkpoints already, so nothing is lost."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None

    def on_sigint() -> None:
        if task.cancelling():
            print("sift: interrupted again: exiting now", file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)
        task.cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)


async def solve_run(
    args: argparse.Namespace,
    setting: str,
    thread_id: str,
    question: str,
    context: SiftContext | None,
    progress: TextIO,
) -> dict[str, Any]:
    from sift_graph.graph import build_sift_graph

    cancel_on_ctrl_c()
    async with opened_checkpoints(setting) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        config = thread_config(thread_id)
        with held_run(setting, thread_id, resuming=args.resume is not None):
            finished = False
            if args.resume is not None:
                snapshot = await graph.aget_state(config)
                if snapshot.metadata is None:
                    raise UsageError(f"no run with thread {thread_id!r} in {describe_checkpoints(setting)}")
                context = with_partials(context_from_args(args, stored_settings_of(snapshot.metadata)), setting)
                open_call_cache(context)
                question, finished = snapshot.values.get("question", ""), run_finished(snapshot.values)
            assert context is not None
            config = run_config(thread_id, context)
            started = time.monotonic()
            if finished:
                print("run already finished: nothing to resume", file=progress, flush=True)
                result = output_of((await graph.aget_state(config)).values)
            else:
                result, started = await run_to_the_end(graph, question, config, context, args, setting, progress)
    print(format_summary(result, time.monotonic() - started), file=progress, flush=True)
    return result


async def run_to_the_end(
    graph: Any,
    question: str,
    config: RunnableConfig,
    context: SiftContext,
    args: argparse.Namespace,
    setting: str,
    progress: TextIO,
) -> tuple[dict[str, Any], float]:
    """Load the model, then run (or go on with) the thread stage by stage: (the output,
    when the run itself started)."""
    print(f"model: {context.model} (loading...)", file=progress, flush=True)
    loading = time.monotonic()
    context.model = load_model_quietly(context)
    print(f"model ready in {time.monotonic() - loading:.1f} s", file=progress, flush=True)
    print(f"question: {question}", file=progress, flush=True)
    snapshot = await graph.aget_state(config)
    resuming = snapshot.metadata is not None
    if resuming:
        pending = [task.name for task in snapshot.tasks if task.result is None] or list(snapshot.next)
        print(f"resuming at: {', '.join(pending) or 'the next step'}", file=progress, flush=True)
    started = time.monotonic()
    try:
        live = args.live and not args.json and progress.isatty()
        inputs = None if resuming else {"question": question}
        result = await stream_run(graph, inputs, config, context, progress, live)
    except BaseException:
        # Every finished step is in the checkpoints: say how to pick the run up.
        if checkpoint_kind(setting) != "memory":
            print(resume_hint(str(config["configurable"]["thread_id"]), setting, args), file=sys.stderr, flush=True)
        raise
    return result, started
