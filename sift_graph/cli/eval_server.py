"""`sift eval --server URL`: the eval's runs on a LangGraph server (the library is
`sift_graph.evaluation.server`), with the same result set, table and exit codes as a
local eval."""

from __future__ import annotations

import argparse
import asyncio
from typing import TextIO

from sift_graph.cli.common import UsageError, context_from_args
from sift_graph.cli.eval_results import announce_results, check_not_all_failed, held_results, print_results
from sift_graph.context import setting_specs
from sift_graph.evaluation.datasets import Question
from sift_graph.evaluation.results import ResultStore


def evaluate_on_server(
    args: argparse.Namespace, questions: list[Question], dataset: str, concurrency: int, out: TextIO, progress: TextIO
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
    if args.sc:
        raise UsageError("--sc with --server: self-consistency runs only locally for now")
    assistant = args.assistant or SIFT_GRAPH
    context = context_from_args(argparse.Namespace(**{**vars(args), "cache": "run"}))

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
        if spec.deployment and getattr(args, spec.name, None) not in (None, spec.default):
            raise UsageError(f"{spec.flag}: chosen by the server's deployment, not by --server's client")
