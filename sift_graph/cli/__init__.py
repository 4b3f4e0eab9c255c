"""The `sift` command line: `sift solve`, `sift eval`, `sift report`, `sift serve`.

- `common`: errors, exit codes, the run-setting flags derived from `SiftContext`;
- `output`: stage events as the lines a person reads;
- `solve`, `evaluate`, `serve`: one module per command; `main`: the parser and entry point.
"""

from sift_graph.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_MODEL_FAULT,
    EXIT_USAGE,
    ModelFault,
    UsageError,
    add_model_arguments,
)
from sift_graph.cli.main import build_parser, main
from sift_graph.cli.output import format_event, format_summary

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_MODEL_FAULT",
    "EXIT_USAGE",
    "ModelFault",
    "UsageError",
    "add_model_arguments",
    "build_parser",
    "format_event",
    "format_summary",
    "main",
]
