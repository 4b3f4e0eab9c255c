"""The `sift` command line.

    sift solve "QUESTION" [--model SPEC] [--json] [--max-tokens N] ...

Progress is printed stage by stage as the graph streams it. With `--json`, stdout holds
only the graph's output as one JSON object and progress goes to stderr. Bad input exits
with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from typing import Any, Sequence, TextIO

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sift", description="SIFT: grounding LLM reasoning in the facts of the question.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    solve = commands.add_parser("solve", help="answer one question with SIFT, printing each stage")
    solve.add_argument("question", nargs="?", help="the question (or use --file)")
    solve.add_argument("--file", help="read the question from this file ('-' for stdin)")
    solve.add_argument("--model", default=DEFAULT_MODEL_SPEC, help="model spec: 'default', 'hf:<folder|file.gguf|hub id>' or 'openai:<model>'")
    solve.add_argument("--base-url", default=None, help="OpenAI-compatible server for an openai: spec (else $OPENAI_BASE_URL)")
    solve.add_argument("--api-key", default=None, help="its API key (else $OPENAI_API_KEY; prefer the variable: flags show in ps)")
    solve.add_argument("--timeout", type=float, default=120.0, help="seconds one model request may take (default 120)")
    solve.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    solve.add_argument("--max-tokens", type=int, default=1024, help="new-token limit per model call (default 1024)")
    solve.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)")
    solve.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (with temperature > 0)")
    solve.add_argument("--forward-rounds", type=int, default=1, help="forward-optimization rounds (default 1)")
    solve.add_argument("--inverse-rounds", type=int, default=1, help="inverse-generation rounds (default 1)")
    solve.add_argument("--comparator", choices=["math", "string"], default="math", help="answer equivalence (default math)")
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


def context_from_args(args: argparse.Namespace) -> SiftContext:
    try:
        return SiftContext(
            model=args.model,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            forward_rounds=args.forward_rounds,
            inverse_rounds=args.inverse_rounds,
            comparator=args.comparator,
            base_url=args.base_url,
            api_key=args.api_key,
            request_timeout=args.timeout,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


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


def solve(args: argparse.Namespace, out: TextIO, progress: TextIO) -> int:
    from sift_graph.graph import build_sift_graph

    _quiet_transformers()
    question = read_question(args)
    context = context_from_args(args)
    started = time.monotonic()
    print(f"model: {args.model} (loading...)", file=progress, flush=True)
    context.model = load_model_quietly(context)
    print(f"model ready in {time.monotonic() - started:.1f} s", file=progress, flush=True)
    print(f"question: {question}", file=progress, flush=True)

    graph = build_sift_graph().compile()
    started = time.monotonic()
    result: dict[str, Any] = {}
    try:
        for mode, chunk in graph.stream(
            {"question": question}, context=context, stream_mode=["custom", "values"]
        ):
            if mode == "custom":
                print(format_event(chunk), file=progress, flush=True)
            else:
                result = output_of(chunk)
    except Exception as exc:  # a model fault that retries could not fix
        if not _is_model_fault(exc):
            raise
        raise ModelFault(describe_fault(exc)) from exc
    print(format_summary(result, time.monotonic() - started), file=progress, flush=True)
    if args.json:
        print(json.dumps(result, ensure_ascii=False), file=out, flush=True)
    return 0


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
