"""What `sift eval` does with its result set, locally or on a LangGraph server: hold it,
say how much is done, and print the table of the questions asked for."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sift_graph.cli.common import ModelFault, UsageError
from sift_graph.evaluation.datasets import Question
from sift_graph.evaluation.results import ResultSet, ResultStore, read_records, record_key
from sift_graph.locks import LockHeld

if TYPE_CHECKING:
    from sift_graph.evaluation.runner import RunOutcome


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
            raise UsageError(f"results {store.path} are being written by {exc.by}") from exc
        yield


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

    wanted = wanted_keys(questions, args.sc or args.samples)
    records = [record for record in store.records() if record_key(record) in wanted]
    result_set = ResultSet(
        store.dataset, store.config.digest(), store.config.as_dict(), records, read_records(store.path)[1]
    )
    summaries = beside_sift(result_set, store.out_dir, questions) if args.sc else summarize_sets([result_set])
    print(format_text(summaries), file=out, flush=True)
    print(f"\n(sift report {args.out} writes the Markdown table, JSON summary and plot)", file=progress, flush=True)
    if outcome is not None and outcome.stopped is not None:
        raise ModelFault(f"stopped: {outcome.stopped}; {outcome.left} not started: rerun the same command to resume")
    if failed := [record for record in records if record["status"] != "ok"]:
        raise ModelFault(
            f"{len(failed)} of {len(wanted)} questions ended in an error, e.g. {failed[0].get('error')}: "
            "rerun the same command to retry them"
        )
    return 0


def check_not_all_failed(outcome: RunOutcome) -> None:
    if outcome.stopped is None and outcome.finished and outcome.errors == outcome.finished:
        raise ModelFault(f"every question failed, e.g. {outcome.first_error}")


def beside_sift(sc: ResultSet, out_dir: Path, questions: list[Question]) -> list[dict[str, Any]]:
    """The summaries that show an SC result set: beside each SIFT result set of the same
    model in the folder (on the questions asked for), else alone."""
    from sift_graph.evaluation.report import summarize_sets
    from sift_graph.evaluation.results import load_result_sets

    asked = {(question.id, question.sha) for question in questions}
    others = [
        dataclasses.replace(
            found, records=[record for record in found.records if (record["id"], record["question_sha"]) in asked]
        )
        for found in load_result_sets(out_dir)
        if found.dataset == sc.dataset and found.digest != sc.digest
    ]
    return [
        summary
        for summary in summarize_sets([sc, *others])
        if any(entry["config_digest"] == sc.digest for entry in summary.get("self_consistency") or [])
    ]
