"""`sift solve`: one question, each stage printed as the graph streams it.

    sift solve "QUESTION" [--model SPEC] [--json] [--max-tokens N] ...
    sift solve --resume THREAD

Every run is checkpointed (by default into `.sift/checkpoints.sqlite`) under a thread id,
printed as the first line, `thread: <id>`, before any model call. `--resume THREAD`
continues an interrupted run with the settings it was started with: finished model
calls are kept, none is made twice. With `--json`, stdout holds only the output as one
JSON object (with `thread_id`) and everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from sift_graph.checkpoints import (
    RUN_DURABILITY,
    checkpoint_kind,
    default_checkpoints,
    describe_checkpoints,
    open_checkpointer,
    sqlite_file,
)
from sift_graph.cli.common import (
    ModelFault,
    UsageError,
    add_model_arguments,
    context_from_args,
    is_model_fault,
    load_model_quietly,
    quiet_transformers,
)
from sift_graph.cli.output import format_event, format_summary
from sift_graph.context import SiftContext
from sift_graph.faults import describe_fault
from sift_graph.runs import SETTINGS_METADATA_KEY as SETTINGS_METADATA_KEY  # still public here
from sift_graph.runs import new_thread_id, settings_metadata, stored_settings_of
from sift_graph.state import output_of, validate_question


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
    solve_parser.set_defaults(run=solve_command)


def read_question(args: argparse.Namespace) -> str:
    if args.file is not None and args.question is not None:
        raise UsageError("give the question as an argument or with --file, not both")
    if args.file is not None:
        try:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageError(f"cannot read question file {args.file!r}: {reason}") from exc
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


@contextlib.contextmanager
def opened_checkpoints(setting: str) -> Iterator[BaseCheckpointSaver[str]]:
    """The saver for `setting`; a store that cannot be opened is bad input, not a crash."""
    import sqlite3

    import psycopg

    with contextlib.ExitStack() as stack:
        try:
            saver = stack.enter_context(open_checkpointer(setting))
        except (OSError, sqlite3.Error, psycopg.Error) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"cannot open checkpoints {describe_checkpoints(setting)!r}: {reason}") from exc
        yield saver


def resume_hint(thread_id: str, setting: str, args: argparse.Namespace) -> str:
    where = "" if args.checkpoints is None else f" --checkpoints {describe_checkpoints(setting)}"
    return f"sift: resume with: sift solve --resume {thread_id}{where}"


def solve_command(args: argparse.Namespace) -> int:
    progress = sys.stderr if args.json else sys.stdout
    return solve(args, sys.stdout, progress)


def solve(args: argparse.Namespace, out: TextIO, progress: TextIO) -> int:
    from sift_graph.graph import build_sift_graph

    quiet_transformers()
    setting = checkpoint_setting(args)
    pending: tuple[str, ...] = ()
    if args.resume is not None:
        if args.question is not None or args.file is not None:
            raise UsageError("--resume continues a stored run: give no question with it")
        question, thread_id = "", args.resume
        if checkpoint_kind(setting) == "sqlite" and not os.path.exists(sqlite_file(setting)):
            # Opening would create an empty store: resuming must not leave files behind.
            raise UsageError(f"no run with thread {thread_id!r} in {sqlite_file(setting)}: no such file")
    else:
        question, thread_id = read_question(args), new_thread_id()
        context = context_from_args(args)  # bad settings: no run at all
    print(f"thread: {thread_id}", file=progress, flush=True)

    with opened_checkpoints(setting) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        if args.resume is not None:
            snapshot = graph.get_state(config)
            if snapshot.metadata is None:
                raise UsageError(f"no run with thread {thread_id!r} in {describe_checkpoints(setting)}")
            context = context_from_args(args, stored_settings_of(snapshot.metadata))
            question, pending = snapshot.values.get("question", ""), tuple(snapshot.next)
        config["metadata"] = settings_metadata(context)

        started = time.monotonic()
        if args.resume is not None and not pending:
            print("run already finished: nothing to resume", file=progress, flush=True)
            result = output_of(graph.get_state(config).values)
        else:
            print(f"model: {context.model} (loading...)", file=progress, flush=True)
            context.model = load_model_quietly(context)
            print(f"model ready in {time.monotonic() - started:.1f} s", file=progress, flush=True)
            print(f"question: {question}", file=progress, flush=True)
            if pending:
                print(f"resuming at: {', '.join(pending)}", file=progress, flush=True)
            started = time.monotonic()
            try:
                result = stream_run(graph, question, config, context, pending, progress)
            except BaseException:
                # Every finished step is in the checkpoints: say how to pick the run up.
                if checkpoint_kind(setting) != "memory":
                    print(resume_hint(thread_id, setting, args), file=sys.stderr, flush=True)
                raise
        print(format_summary(result, time.monotonic() - started), file=progress, flush=True)
    if args.json:
        print(json.dumps({"thread_id": thread_id, **result}, ensure_ascii=False), file=out, flush=True)
    return 0


def stream_run(
    graph: Any, question: str, config: RunnableConfig, context: SiftContext, pending: tuple[str, ...], progress: TextIO
) -> dict[str, Any]:
    """Stream one run (a new one, or the rest of an interrupted one) stage by stage."""
    result: dict[str, Any] = {}
    try:
        for mode, chunk in graph.stream(
            None if pending else {"question": question},
            config,
            context=context,
            stream_mode=["custom", "values"],
            durability=RUN_DURABILITY,
        ):
            if mode == "custom":
                print(format_event(chunk), file=progress, flush=True)
            else:
                result = output_of(chunk)
    except Exception as exc:  # a model fault that retries could not fix
        if not is_model_fault(exc):
            raise
        raise ModelFault(describe_fault(exc)) from exc
    return result
