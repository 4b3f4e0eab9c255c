"""What every `sift` command shares: its errors and exit codes, the run-setting flags
(derived from `SiftContext`), and loading a model without the loaders' noise."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from typing import Any

from sift_graph.cache import call_store
from sift_graph.context import SiftContext, setting_specs
from sift_graph.models.specs import resolve_model
from sift_graph.partials import partial_store, partials_file

EXIT_MODEL_FAULT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a reader that went away


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class ModelFault(Exception):
    """The model failed for good (after retries): one line, exit status 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error raised as `UsageError` (one line) instead of the
    whole usage block and exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def add_model_arguments(
    parser: argparse.ArgumentParser, *, resumable: bool = False, context_class: type[SiftContext] = SiftContext
) -> None:
    """A flag for every run setting of `context_class` (`--model`, `--max-tokens`, ...).

    With `resumable`, a flag not given is None rather than its default, so that a
    resumed run keeps what it was started with (see `context_from_args`)."""
    for spec in setting_specs(context_class):
        shown_default = "" if spec.secret or spec.default is None else f" (default {spec.default})"
        options: dict[str, Any] = {
            "dest": spec.name,
            "default": None if resumable or spec.secret else spec.default,
            "help": spec.description + shown_default,
        }
        if spec.choices:
            options["choices"] = list(spec.choices)
        else:
            options["type"] = spec.value_type
        parser.add_argument(spec.flag, **options)


def given_settings(args: argparse.Namespace, context_class: type[SiftContext] = SiftContext) -> dict[str, Any]:
    """The run settings given on the command line (a flag left out is not among them)."""
    return {
        spec.name: getattr(args, spec.name)
        for spec in setting_specs(context_class)
        if getattr(args, spec.name, None) is not None
    }


def context_from_args(
    args: argparse.Namespace, stored: dict[str, Any] | None = None, context_class: type[SiftContext] = SiftContext
) -> SiftContext:
    """Defaults, then what a resumed run was started with, then the flags given now."""
    try:
        return context_class.from_settings(stored or {}, **given_settings(args, context_class))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def open_call_cache(context: SiftContext) -> None:
    """Open the call cache (and the partial replies' store) a context names now: a file
    that cannot be one (corrupt, not writable, another program's database) is bad input
    (exit 2), before any model loads."""
    try:
        call_store(context.cache)
        partial_store(partials_file(context.partials, context.cache))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def quiet_transformers() -> None:
    """Model loading progress bars would drown the stage-by-stage output."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def load_model_quietly(context: SiftContext) -> Any:
    """Resolve the context's model without the loaders' progress bars on stderr.

    The one-time GGUF conversion draws a plain tqdm bar that no transformers setting
    turns off. What the loaders printed is replayed if loading fails unexpectedly.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return resolve_model(context.model, context.connection, context.load_options)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise
