"""The `sift` entry point: one parser, a module per command (`solve`, `evaluate`, `serve`, `view`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from sift_graph.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_MODEL_FAULT,
    EXIT_USAGE,
    ArgumentParser,
    ModelFault,
    UsageError,
)
from sift_graph.cli.evaluate import add_eval_commands
from sift_graph.cli.serve import add_serve_command
from sift_graph.cli.solve import add_solve_command
from sift_graph.cli.view import add_view_command


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="sift", description="SIFT: grounding LLM reasoning in the facts of the question.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    add_solve_command(commands)
    add_eval_commands(commands)
    add_serve_command(commands)
    add_view_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
        return status
    except UsageError as exc:
        print(f"sift: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelFault as exc:
        print(f"sift: error: model call failed: {exc}", file=sys.stderr)
        return EXIT_MODEL_FAULT
    except KeyboardInterrupt:
        print("sift: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`sift solve ... | head`): stop quietly, as a process
        # killed by SIGPIPE would; nothing more can be written, so no message either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
