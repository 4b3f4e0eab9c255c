"""`sift eval` and `sift report`: their flags and commands (the library is `sift_graph.evaluation`).

    sift eval --dataset gsm8k --model openai:llama3 --base-url http://localhost:8000/v1 \\
        --limit 200 --concurrency 8 --out runs/
    sift report runs/

Bad input exits with status 2 and one line; a model that fails on every question
exits with status 1, and so does a run stopped because its model server went away
(several questions in a row could not reach it), after printing the table of what is
done. A question that fails alone is recorded as an error and retried by the next run
of the same command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sift_graph.checkpoints import checkpoint_kind, default_checkpoints, sqlite_file
from sift_graph.cli.common import (
    ModelFault,
    UsageError,
    add_model_arguments,
    context_from_args,
    load_model_quietly,
    open_call_cache,
    quiet_transformers,
)
from sift_graph.context import DEPLOYMENT_SETTINGS, SiftContext, setting_specs
from sift_graph.evaluation.datasets import DatasetError, Question, dataset_names, load_dataset
from sift_graph.evaluation.results import EvalConfig, ResultSet, ResultStore, read_records, record_key
from sift_graph.locks import LockHeld

if TYPE_CHECKING:
    from sift_graph.evaluation.runner import RunOutcome

DEFAULT_OUT = "sift-eval"
DEFAULT_CONCURRENCY = 4


def add_eval_commands(commands: Any) -> None:
    """Register `eval` and `report` on the `sift` subparsers."""
    evaluate = commands.add_parser("eval", help="evaluate CoT and SIFT on a test set (resumable)")
    evaluate.add_argument("--dataset", required=True, help=f"{', '.join(dataset_names())}, or a .jsonl file")
    evaluate.add_argument("--limit", type=int, default=None, help="only the first N questions")
    evaluate.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"questions in flight at once (default {DEFAULT_CONCURRENCY}; a local model suggests its own, "
        "as its concurrent calls generate together)",
    )
    evaluate.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT}); rerun to resume")
    evaluate.add_argument(
        "--samples", type=int, default=1, help="runs per question, with --temperature > 0 (majority vote)"
    )
    evaluate.add_argument(
        "--server",
        metavar="URL",
        default=None,
        help="run every question on this LangGraph server (langgraph dev or a deployment; its API key from "
        "LANGGRAPH_API_KEY): its deployment chooses the model, the flags here only the run settings",
    )
    evaluate.add_argument(
        "--assistant",
        default=None,
        metavar="NAME_OR_ID",
        help="with --server: the assistant that runs SIFT (default: the 'sift' graph's own)",
    )
    add_model_arguments(evaluate)
    # Not given: the persistent cache beside the checkpoints (`default_eval_cache`).
    evaluate.set_defaults(run=eval_command, cache=None)

    report = commands.add_parser("report", help="tables, JSON and a plot from an eval results folder")
    report.add_argument("dir", help="the folder 'sift eval --out' wrote to")
    report.set_defaults(run=report_command)


def _check_counts(args: argparse.Namespace) -> None:
    for flag, value in (("--limit", args.limit), ("--concurrency", args.concurrency), ("--samples", args.samples)):
        if value is not None and value < 1:
            raise UsageError(f"{flag}: expected an integer >= 1, got {value}")
    if args.samples > 1 and args.temperature <= 0:
        raise UsageError("--samples > 1 needs --temperature > 0 (greedy runs would all be the same)")


def pick_concurrency(given: int | None, model: Any) -> tuple[int, str]:
    """The concurrency to run at, and the header line that says so: the one given, else
    the one a local model suggests (its calls in flight generate together, so more of
    them cost little more than one), else DEFAULT_CONCURRENCY."""
    if given is not None:
        return given, f"concurrency: {given}"
    suggested = getattr(model, "suggested_concurrency", None)
    if isinstance(suggested, int) and suggested >= 1:
        return suggested, f"concurrency: {suggested} (local model: batched generation; --concurrency changes it)"
    return DEFAULT_CONCURRENCY, f"concurrency: {DEFAULT_CONCURRENCY}"


def eval_command(args: argparse.Namespace, out: TextIO | None = None, progress: TextIO | None = None) -> int:
    out, progress = out or sys.stdout, progress or sys.stderr

    _check_counts(args)
    try:
        dataset, questions = load_dataset(args.dataset, args.limit)
    except DatasetError as exc:
        raise UsageError(str(exc)) from exc
    if args.server is not None:
        return evaluate_on_server(args, questions, dataset, out, progress)
    if args.cache is None:
        args.cache = default_eval_cache()
    context = context_from_args(args)
    open_call_cache(context)
    store = ResultStore(args.out, dataset, EvalConfig.from_context(context))
    with held_results(store):
        return evaluate(args, store, questions, context, out, progress)


def default_eval_cache() -> str:
    """`sift eval`'s call cache: `cache.sqlite` beside the SQLite checkpoints (else in
    `.sift/`), so a rerun into another folder or with another comparator makes no call."""
    checkpoints = default_checkpoints()
    folder = Path(sqlite_file(checkpoints)).parent if checkpoint_kind(checkpoints) == "sqlite" else Path(".sift")
    return str(folder / "cache.sqlite")


@contextlib.contextmanager
def held_results(store: ResultStore) -> Iterator[None]:
    """The result set held by this process; a bad folder or another process on the same
    set is bad input (exit 2), found before any model loads."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(store.held())
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        except LockHeld as exc:
            by = f"pid {exc.holder}" if exc.holder is not None else "another process"
            raise UsageError(f"results {store.path} are being written by {by}") from exc
        yield


def evaluate(
    args: argparse.Namespace,
    store: ResultStore,
    questions: list[Question],
    context: SiftContext,
    out: TextIO,
    progress: TextIO,
) -> int:
    from sift_graph.evaluation.runner import run_eval

    outcome: RunOutcome | None = None
    if announce_results(store, questions, args.samples, progress):
        quiet_transformers()
        started = time.monotonic()
        print(f"call cache: {context.cache}", file=progress, flush=True)
        print(f"model: {args.model} (loading...)", file=progress, flush=True)
        context.model = load_model_quietly(context)
        print(f"model ready in {time.monotonic() - started:.1f} s", file=progress, flush=True)
        concurrency, header = pick_concurrency(args.concurrency, context.model)
        print(header, file=progress, flush=True)
        outcome = asyncio.run(
            run_eval(
                questions,
                store=store,
                context=context,
                samples=args.samples,
                concurrency=concurrency,
                progress=progress,
            )
        )
        check_not_all_failed(outcome)
    return print_results(args, store, questions, outcome, out, progress)


def wanted_keys(questions: list[Question], samples: int) -> set[tuple[str, int, str]]:
    """The result keys of every (question, sample) asked for."""
    return {(q.id, sample, q.sha) for q in questions for sample in range(samples)}


def announce_results(store: ResultStore, questions: list[Question], samples: int, progress: TextIO) -> int:
    """Say where the results go and how many are done; the number still to do."""
    wanted = wanted_keys(questions, samples)
    done = len(store.done_keys() & wanted)
    print(f"results: {store.path} ({done} of {len(wanted)} already done)", file=progress, flush=True)
    return len(wanted) - done


def print_results(
    args: argparse.Namespace,
    store: ResultStore,
    questions: list[Question],
    outcome: RunOutcome | None,
    out: TextIO,
    progress: TextIO,
) -> int:
    """The table of the questions asked for, whatever else the result set holds; exit 1
    (ModelFault) for a run that stopped because its server went away."""
    from sift_graph.evaluation.report import format_text, summarize_sets

    wanted = wanted_keys(questions, args.samples)
    records = [record for record in store.records() if record_key(record) in wanted]
    result_set = ResultSet(
        store.dataset, store.config.digest(), store.config.as_dict(), records, read_records(store.path)[1]
    )
    print(format_text(summarize_sets([result_set])), file=out, flush=True)
    print(f"\n(sift report {args.out} writes the Markdown table, JSON summary and plot)", file=progress, flush=True)
    if outcome is not None and outcome.stopped is not None:
        raise ModelFault(f"stopped: {outcome.stopped}; {outcome.left} not started: rerun the same command to resume")
    return 0


def check_not_all_failed(outcome: RunOutcome) -> None:
    if outcome.stopped is None and outcome.finished and outcome.errors == outcome.finished:
        raise ModelFault(f"every question failed, e.g. {outcome.first_error}")


def evaluate_on_server(
    args: argparse.Namespace, questions: list[Question], dataset: str, out: TextIO, progress: TextIO
) -> int:
    """`sift eval --server URL`: the same results, table and exit codes as a local eval,
    every run on the server. What the server cannot do is found before any question."""
    from sift_graph.evaluation.server import (
        SIFT_GRAPH,
        ServerUnusable,
        connect,
        open_client,
        run_server_eval,
        server_config,
    )

    refuse_deployment_flags(args)
    assistant = args.assistant or SIFT_GRAPH
    context = context_from_args(argparse.Namespace(**{**vars(args), "cache": "run"}))
    concurrency = args.concurrency or DEFAULT_CONCURRENCY

    async def run() -> int:
        client = open_client(args.server)
        try:
            target = await connect(client, args.server, assistant)
        except ServerUnusable as exc:
            raise UsageError(str(exc)) from exc
        store = ResultStore(args.out, dataset, server_config(context, target))
        with held_results(store):
            announce_results(store, questions, args.samples, progress)
            print(f"server: {args.server}, assistant {assistant}; concurrency: {concurrency}", file=progress)
            pace = {"samples": args.samples, "concurrency": concurrency, "progress": progress}
            outcome = await run_server_eval(
                questions, client=client, target=target, store=store, context=context, **pace
            )
            check_not_all_failed(outcome)
            return print_results(args, store, questions, outcome, out, progress)

    return asyncio.run(run())


def refuse_deployment_flags(args: argparse.Namespace) -> None:
    """With --server, the deployment owns the model, its server, key, cache and dtype:
    a flag naming one is refused rather than silently ignored."""
    for spec in setting_specs():
        if spec.name in DEPLOYMENT_SETTINGS and getattr(args, spec.name, None) not in (None, spec.default):
            raise UsageError(f"{spec.flag}: chosen by the server's deployment, not by --server's client")


def report_command(args: argparse.Namespace, out: TextIO | None = None, progress: TextIO | None = None) -> int:
    out, progress = out or sys.stdout, progress or sys.stderr
    from pathlib import Path

    from sift_graph.evaluation.report import write_report

    if not Path(args.dir).is_dir():
        raise UsageError(f"no such results folder {args.dir!r}")
    try:
        text, written = write_report(args.dir)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(text, file=out, flush=True)
    print("wrote " + ", ".join(str(path) for path in written), file=progress, flush=True)
    return 0
