"""The `sift` command line.

    sift solve "QUESTION" [--model SPEC] [--json] [--max-tokens N] ...
    sift solve --resume THREAD

Every run is checkpointed (by default into `.sift/checkpoints.sqlite`) under a thread id,
printed as the first line, `thread: <id>`, before any model call. `--resume THREAD`
continues an interrupted run with the settings it was started with: finished model
calls are kept, none is made twice. Progress is printed stage by stage as the graph
streams it. With `--json`, stdout holds only the output as one JSON object (with
`thread_id`) and everything else goes to stderr. Bad input exits with status 2 and one
line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import uuid
from typing import Any, Sequence, TextIO

from sift_graph.checkpoints import (
    RUN_DURABILITY,
    checkpoint_kind,
    default_checkpoints,
    describe_checkpoints,
    open_checkpointer,
    sqlite_file,
)
from sift_graph.context import SiftContext
from sift_graph.faults import describe_fault, is_transient_fault
from sift_graph.models import DEFAULT_MODEL_SPEC, resolve_model
from sift_graph.nodes import validate_question
from sift_graph.state import output_of

EXIT_MODEL_FAULT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_KIND_LABEL = {"sticker": "generated", "forward": "forward-optimized", "inverse": "inverse-generated, then forward-optimized"}
_ROLE_LABEL = {"predict_sticker": "answer from sticker", "predict_query_sticker": "answer from query+sticker"}

# A run's settings: stored with its checkpoints so that `--resume` continues it as it was
# started; a flag given again on resume overrides (a moved server, a longer timeout).
# The API key is deliberately not among them: secrets stay out of the checkpoint store.
RUN_SETTINGS_DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL_SPEC,
    "base_url": None,
    "timeout": 120.0,
    "max_tokens": 1024,
    "temperature": 0.0,
    "top_p": None,
    "forward_rounds": 1,
    "inverse_rounds": 1,
    "comparator": "math",
}
SETTINGS_METADATA_KEY = "sift_settings"


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class ModelFault(Exception):
    """The model failed for good (after retries): one line, exit status 1."""


def _is_model_fault(exc: BaseException) -> bool:
    import openai

    return is_transient_fault(exc) or isinstance(exc, openai.APIError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print the whole usage block
        raise UsageError(message)


def add_model_arguments(parser: argparse.ArgumentParser, *, resumable: bool = False) -> None:
    """The model and decoding flags, shared by `sift solve` and `sift eval`.

    With `resumable`, a flag not given is None rather than its default, so that a
    resumed run keeps what it was started with (see `run_settings`)."""
    defaults = dict.fromkeys(RUN_SETTINGS_DEFAULTS) if resumable else RUN_SETTINGS_DEFAULTS
    parser.add_argument("--model", default=defaults["model"], help="model spec: 'default', 'hf:<folder|file.gguf|hub id>' or 'openai:<model>'")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible server for an openai: spec (else $OPENAI_BASE_URL)")
    parser.add_argument("--api-key", default=None, help="its API key (else $OPENAI_API_KEY; prefer the variable: flags show in ps)")
    parser.add_argument("--timeout", type=float, default=defaults["timeout"], help="seconds one model request may take (default 120)")
    parser.add_argument("--max-tokens", type=int, default=defaults["max_tokens"], help="new-token limit per model call (default 1024)")
    parser.add_argument("--temperature", type=float, default=defaults["temperature"], help="sampling temperature (default 0: greedy)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (with temperature > 0)")
    parser.add_argument("--forward-rounds", type=int, default=defaults["forward_rounds"], help="forward-optimization rounds (default 1)")
    parser.add_argument("--inverse-rounds", type=int, default=defaults["inverse_rounds"], help="inverse-generation rounds (default 1)")
    parser.add_argument(
        "--comparator", choices=["math", "string"], default=defaults["comparator"],
        help="answer equivalence, for consensus (and grading in eval) (default math)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sift", description="SIFT: grounding LLM reasoning in the facts of the question.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    solve = commands.add_parser("solve", help="answer one question with SIFT, printing each stage")
    solve.add_argument("question", nargs="?", help="the question (or use --file)")
    solve.add_argument("--file", help="read the question from this file ('-' for stdin)")
    solve.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    add_model_arguments(solve, resumable=True)
    solve.add_argument(
        "--checkpoints",
        default=None,
        help="where runs are kept: a SQLite file, a postgresql:// URL or 'memory' "
        "(default $SIFT_CHECKPOINTS, else .sift/checkpoints.sqlite)",
    )
    solve.add_argument("--resume", metavar="THREAD", default=None, help="continue the interrupted run of this thread")
    from sift_graph.evaluation.cli import add_eval_commands  # `sift eval`, `sift report` (issue 5)

    add_eval_commands(commands)
    return parser


def read_question(args: argparse.Namespace) -> str:
    if args.file is not None and args.question is not None:
        raise UsageError("give the question as an argument or with --file, not both")
    if args.file is not None:
        try:
            text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
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


def run_settings(args: argparse.Namespace, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then what a resumed run was started with, then the flags given now."""
    given = {name: getattr(args, name) for name in RUN_SETTINGS_DEFAULTS if getattr(args, name) is not None}
    return {**RUN_SETTINGS_DEFAULTS, **(stored or {}), **given}


def context_from_settings(settings: dict[str, Any], api_key: str | None) -> SiftContext:
    try:
        return SiftContext(
            model=settings["model"],
            max_tokens=settings["max_tokens"],
            temperature=settings["temperature"],
            top_p=settings["top_p"],
            forward_rounds=settings["forward_rounds"],
            inverse_rounds=settings["inverse_rounds"],
            comparator=settings["comparator"],
            base_url=settings["base_url"],
            api_key=api_key,
            request_timeout=settings["timeout"],
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def context_from_args(args: argparse.Namespace) -> SiftContext:
    return context_from_settings(run_settings(args), args.api_key)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines()) or "    (empty)"


def format_event(event: dict[str, Any]) -> str:
    """One streamed stage event as the lines a person reads."""
    stage = event.get("stage")
    prefix = f"[round {event['round']}]" if "round" in event else "[fallback]"
    malformed = "" if event.get("well_formed", True) else f"  (malformed: {'; '.join(event['problems'])})"
    if stage == "sticker":
        return f"{prefix} sticker ({_KIND_LABEL[event['kind']]}){malformed}:\n{_indent(event['sticker'])}"
    if stage == "inverse":
        return f"{prefix} sticker rebuilt from the last solution{malformed}:\n{_indent(event['sticker'])}"
    if stage == "prediction":
        cut = "  (cut off at the token limit)" if event["truncated"] else ""
        return f"{prefix} {_ROLE_LABEL[event['role']]}: {event['answer'] or '(none)'}{cut}"
    if stage == "consensus":
        first, second = (answer or "(none)" for answer in event["answers"])
        verdict = "consensus" if event["agreed"] else "no consensus"
        why = "  (a prediction was cut off at the token limit)" if event.get("truncated") and not event["agreed"] else ""
        return f"{prefix} {verdict}: {first} vs {second}{why}"
    if stage == "direct":
        return f"{prefix} no round agreed; direct chain-of-thought answer: {event['answer'] or '(none)'}"
    return f"{prefix} {json.dumps(event, ensure_ascii=False)}"


def format_summary(result: dict[str, Any], seconds: float) -> str:
    usage = result.get("usage") or {}
    calls = sum(counts["calls"] for counts in usage.values())
    tokens_in = sum(counts["input_tokens"] for counts in usage.values())
    tokens_out = sum(counts["output_tokens"] for counts in usage.values())
    how = (
        f"consensus in round {result['consensus_round']}"
        if result.get("consensus_round")
        else "fallback: direct chain of thought"
    )
    return (
        f"answer: {result.get('answer') or '(none)'}  ({how})\n"
        f"calls: {calls}  tokens: {tokens_in} in, {tokens_out} out  time: {seconds:.1f} s"
    )


def _quiet_transformers() -> None:
    """Model loading progress bars would drown the stage-by-stage output."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_model_quietly(context: SiftContext) -> Any:
    """Resolve the context's model without the loaders' progress bars on stderr.

    The one-time GGUF conversion draws a plain tqdm bar that no transformers setting
    turns off. What the loaders printed is replayed if loading fails unexpectedly.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return resolve_model(context.model, context.connection)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise


def _checkpoint_setting(args: argparse.Namespace) -> str:
    setting = args.checkpoints or default_checkpoints()
    try:
        checkpoint_kind(setting)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return setting


@contextlib.contextmanager
def _opened_checkpoints(setting: str):
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


def solve(args: argparse.Namespace, out: TextIO, progress: TextIO) -> int:
    from sift_graph.graph import build_sift_graph

    _quiet_transformers()
    setting = _checkpoint_setting(args)
    pending: tuple[str, ...] = ()
    if args.resume is not None:
        if args.question is not None or args.file is not None:
            raise UsageError("--resume continues a stored run: give no question with it")
        question, thread_id = "", args.resume
        if checkpoint_kind(setting) == "sqlite" and not os.path.exists(sqlite_file(setting)):
            # Opening would create an empty store: resuming must not leave files behind.
            raise UsageError(f"no run with thread {thread_id!r} in {sqlite_file(setting)}: no such file")
    else:
        question, thread_id = read_question(args), str(uuid.uuid4())
        settings = run_settings(args)
        context = context_from_settings(settings, args.api_key)  # bad settings: no run at all
    print(f"thread: {thread_id}", file=progress, flush=True)

    with _opened_checkpoints(setting) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
        if args.resume is not None:
            snapshot = graph.get_state(config)
            if snapshot.metadata is None:
                raise UsageError(f"no run with thread {thread_id!r} in {describe_checkpoints(setting)}")
            settings = run_settings(args, json.loads(snapshot.metadata.get(SETTINGS_METADATA_KEY) or "{}"))
            context = context_from_settings(settings, args.api_key)
            question, pending = snapshot.values.get("question", ""), tuple(snapshot.next)
        config["metadata"] = {SETTINGS_METADATA_KEY: json.dumps(settings)}

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
                result = _run(graph, question, config, context, pending, progress)
            except BaseException:
                # Every finished step is in the checkpoints: say how to pick the run up.
                if checkpoint_kind(setting) != "memory":
                    print(resume_hint(thread_id, setting, args), file=sys.stderr, flush=True)
                raise
        print(format_summary(result, time.monotonic() - started), file=progress, flush=True)
    if args.json:
        print(json.dumps({"thread_id": thread_id, **result}, ensure_ascii=False), file=out, flush=True)
    return 0


def _run(graph: Any, question: str, config: dict, context: SiftContext, pending: tuple, progress: TextIO) -> dict:
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
        if not _is_model_fault(exc):
            raise
        raise ModelFault(describe_fault(exc)) from exc
    return result


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "solve":
            progress = sys.stderr if args.json else sys.stdout
            return solve(args, sys.stdout, progress)
        if hasattr(args, "run"):  # commands that live in their own modules
            return args.run(args)
        raise UsageError(f"unknown command {args.command!r}")
    except UsageError as exc:
        print(f"sift: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelFault as exc:
        print(f"sift: error: model call failed: {exc}", file=sys.stderr)
        return EXIT_MODEL_FAULT
    except KeyboardInterrupt:
        print("sift: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    # Under `python -m sift_graph.cli` this file is `__main__` and also, once imported by
    # sift_graph.evaluation, `sift_graph.cli`: run the latter so both share UsageError.
    from sift_graph.cli import main as _main

    sys.exit(_main())
