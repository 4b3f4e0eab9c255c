"""`sift eval` and `sift report`: their flags and commands (the library is `sift_graph.evaluation`).

    sift eval --dataset gsm8k --model openai:llama3 --base-url http://localhost:8000/v1 \\
        --limit 200 --concurrency 8 --out runs/
    sift report runs/

    # self-consistency beside it: CoT sampled 8 times (SC@1, 2, 4, 8), into the same folder
    sift eval --dataset gsm8k --model openai:llama3 --base-url http://localhost:8000/v1 \
        --limit 200 --out runs/ --sc 8 --temperature 0.7 --top-p 0.95

Bad input exits with status 2 and one line; a model that fails on every question
exits with status 1, and so does a run stopped because its model server went away
(several questions in a row could not reach it), after printing the table of what is
done. A question that fails alone is recorded as an error and retried by the next run
of the same command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sift_graph.checkpoints import checkpoint_kind, default_checkpoints, sqlite_file
from sift_graph.cli.common import (
    UsageError,
    add_model_arguments,
    context_from_args,
    load_model_quietly,
    open_call_cache,
    quiet_transformers,
)
from sift_graph.cli.eval_results import announce_results, check_not_all_failed, held_results, print_results
from sift_graph.cli.eval_server import evaluate_on_server
from sift_graph.context import SiftContext
from sift_graph.evaluation.datasets import DatasetError, Question, dataset_names, load_dataset
from sift_graph.evaluation.results import EvalConfig, ResultStore
from sift_graph.models.decoding import is_sampled

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
        "--ids",
        type=question_ids,
        default=None,
        metavar="ID,ID,...",
        help="only the questions with these ids (after --limit): rerun a few questions into a result set, "
        "as 'sift report --variants' asks for the number check",
    )
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
    evaluate.add_argument(
        "--sc",
        type=int,
        default=None,
        metavar="K",
        help="self-consistency instead of SIFT: the CoT baseline sampled K times (--temperature > 0 and "
        "--top-p as given, seeds SEED + k), voted SC@1, 2, 4, ..., K; its own result set, which the table "
        "and 'sift report' show beside the SIFT result set of the same model in --out",
    )
    add_model_arguments(evaluate)
    # Not given: the persistent cache beside the checkpoints (`default_eval_cache`).
    evaluate.set_defaults(run=eval_command, cache=None)

    report = commands.add_parser("report", help="tables, JSON and a plot from an eval results folder")
    report.add_argument("dir", help="the folder 'sift eval --out' wrote to")
    report.add_argument(
        "--variants",
        action="store_true",
        help="print the table of SIFT's variants that the records answer without a new call (stage "
        "budgets, the query+sticker fallback) instead of the accuracy table; the files are written as always",
    )
    report.set_defaults(run=report_command)


def question_ids(text: str) -> list[str]:
    """`--ids 5,8,10`: the ids, stripped; none at all is a usage error."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("expected question ids separated by commas")
    return ids


def _check_counts(args: argparse.Namespace) -> None:
    counts = (("--limit", args.limit), ("--concurrency", args.concurrency), ("--samples", args.samples))
    for flag, value in (*counts, ("--sc", args.sc)):
        if value is not None and value < 1:
            raise UsageError(f"{flag}: expected an integer >= 1, got {value}")
    for flag, value in (("--samples", args.samples), ("--sc", args.sc)):
        if value is not None and value > 1 and not is_sampled(args.temperature):
            raise UsageError(f"{flag} > 1 needs --temperature > 0 (greedy runs would all be the same)")
    if args.sc is not None and args.samples > 1:
        raise UsageError("--sc and --samples: self-consistency runs no SIFT to repeat; give one of them")


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
        dataset, questions = load_dataset(args.dataset, args.limit, args.ids)
    except DatasetError as exc:
        raise UsageError(str(exc)) from exc
    if args.server is not None:
        return evaluate_on_server(args, questions, dataset, args.concurrency or DEFAULT_CONCURRENCY, out, progress)
    if args.cache is None:
        args.cache = default_eval_cache()
    context = context_from_args(args)
    open_call_cache(context)
    config = EvalConfig.for_self_consistency(context) if args.sc else EvalConfig.from_context(context)
    store = ResultStore(args.out, dataset, config)
    with held_results(store):
        return evaluate(args, store, questions, context, out, progress)


def default_eval_cache() -> str:
    """`sift eval`'s call cache: `cache.sqlite` beside the SQLite checkpoints (else in
    `.sift/`), so a rerun into another folder or with another comparator makes no call."""
    checkpoints = default_checkpoints()
    folder = Path(sqlite_file(checkpoints)).parent if checkpoint_kind(checkpoints) == "sqlite" else Path(".sift")
    return str(folder / "cache.sqlite")


def evaluate(
    args: argparse.Namespace,
    store: ResultStore,
    questions: list[Question],
    context: SiftContext,
    out: TextIO,
    progress: TextIO,
) -> int:
    from sift_graph.evaluation.runner import run_eval

    samples = args.sc or args.samples
    outcome: RunOutcome | None = None
    if announce_results(store, questions, samples, progress):
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
                samples=samples,
                concurrency=concurrency,
                progress=progress,
                self_consistency=bool(args.sc),
            )
        )
        check_not_all_failed(outcome)
    return print_results(args, store, questions, outcome, out, progress)


def report_command(args: argparse.Namespace, out: TextIO | None = None, progress: TextIO | None = None) -> int:
    out, progress = out or sys.stdout, progress or sys.stderr
    from pathlib import Path

    from sift_graph.evaluation.report import write_report

    if not Path(args.dir).is_dir():
        raise UsageError(f"no such results folder {args.dir!r}")
    try:
        text, written = write_report(args.dir, variants=args.variants)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(text, file=out, flush=True)
    print("wrote " + ", ".join(str(path) for path in written), file=progress, flush=True)
    return 0
