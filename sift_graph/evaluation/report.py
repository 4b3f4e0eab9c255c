"""`sift report`: the table on the terminal, and Markdown, JSON and PNG in the folder.

A self-consistency result set (`sift eval --sc K`) is shown beside every SIFT result set
it compares with, as SC@k rows of its table (see `sets`); each SIFT set's Markdown also
shows the variants its records answer (`variants`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sift_graph.evaluation.plot import plot
from sift_graph.evaluation.records import FALLBACK
from sift_graph.evaluation.results import load_result_sets
from sift_graph.evaluation.sets import summarize_sets as summarize_sets  # `sift eval` prints them too
from sift_graph.evaluation.summary import COLUMN_LABELS, COLUMNS
from sift_graph.evaluation.tables import (
    accuracy_text,
    decoding_text,
    markdown_table,
    paired_text,
    percent,
    sc_rows,
    text_table,
    variants_markdown,
)
from sift_graph.evaluation.variants import variant_text

MARKDOWN_FILE = "report.md"
JSON_FILE = "summary.json"
PLOT_FILE = "accuracy_vs_tokens.png"


def set_title(summary: dict[str, Any]) -> str:
    config = summary["config"]
    if "columns" not in summary:
        return (
            f"{summary['dataset']} / {config['model']}: self-consistency (max {config['max_tokens']} tokens, "
            f"{config['comparator']} grading) [{summary['config_digest']}]"
        )
    decoding = f"T={config['temperature']:g}" + (f", top-p {config['top_p']:g}" if config.get("top_p") else "")
    return (
        f"{summary['dataset']} / {config['model']} ({decoding}, max {config['max_tokens']} tokens, "
        f"{config['forward_rounds']} FO + {config['inverse_rounds']} IG rounds{variant_text(config, ', ')}, "
        f"{config['comparator']} grading) [{summary['config_digest']}]"
    )


def detail_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Method, accuracy, exits here, calls/question, tokens/question, McNemar vs CoT
    (and, beside SC@k rows, vs stage 3)."""
    if "columns" not in summary:  # an SC set alone
        return sc_rows(summary)
    sift_rows = paper_rows(summary)
    if not summary.get("self_consistency"):
        return sift_rows
    return [*([*row, "-"] for row in sift_rows), *sc_rows(summary)]


def paper_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for column in COLUMNS:
        cell = summary["columns"][column]
        exits = "-" if column == "cot" else percent(summary["exit_shares"][column.removeprefix("stage")]) + "%"
        paired = paired_text(cell["vs_cot"]) if "vs_cot" in cell else "-"
        rows.append(
            [
                COLUMN_LABELS[column],
                accuracy_text(cell),
                exits,
                f"{cell['calls_per_question']:.2f}" if cell.get("calls_per_question") is not None else "-",
                f"{cell['tokens_per_question']:.0f}" if cell.get("tokens_per_question") is not None else "-",
                paired,
            ]
        )
    rows.append(["fallback", "-", percent(summary["exit_shares"][FALLBACK]) + "%", "-", "-", "-"])
    majority = summary.get("majority")
    if majority:
        for method, label in (("cot", "CoT + majority"), ("sift", "SIFT + majority")):
            cell = majority[method]
            paired = paired_text(cell["vs_cot"]) if "vs_cot" in cell else "-"
            rows.append(
                [
                    label,
                    accuracy_text(cell),
                    "-",
                    "-",
                    f"{cell['tokens_per_question']:.0f}" if cell["tokens_per_question"] is not None else "-",
                    paired,
                ]
            )
    return rows


def detail_header(summary: dict[str, Any]) -> list[str]:
    accuracy = "accuracy % [95% CI]" if summary.get("samples", 1) == 1 else "accuracy % (mean, range of runs) [95% CI]"
    if "self_consistency" not in summary:
        return ["method", accuracy, "exit here", "calls/q", "tokens/q", "McNemar vs CoT (SIFT-only vs CoT-only)"]
    return [
        "method", accuracy, "exit here", "calls/q", "tokens/q",
        "McNemar vs CoT (row-only vs CoT-only)", "McNemar vs stage 3 (row-only vs stage-3-only)",
    ]  # fmt: skip


def sc_footnote(summary: dict[str, Any]) -> list[str]:
    return [
        f"SC ({decoding_text(entry['decoding'])}) [{entry['config_digest']}]: {entry['questions']} questions with "
        f"all {entry['samples']} samples voted on, {entry['errors']} errors, wall time {entry['wall_seconds']:.1f} s"
        for entry in summary.get("self_consistency") or []
    ]


def footnote(summary: dict[str, Any]) -> str:
    if "columns" not in summary:
        return "\n".join(sc_footnote(summary))
    parts = [
        f"{summary['questions']} questions x {summary['samples']} sample(s), {summary['graded']} graded, "
        f"{summary['errors']} errors, wall time {summary['wall_seconds']:.1f} s"
    ]
    saved = summary.get("saved_calls") or {}
    if any(saved.values()):
        parts.append(
            f"calls saved by reuse/cache: {saved['reused'] + saved['from_cache']} "
            f"({saved['reused']} reused within runs, {saved['from_cache']} from the call cache)"
        )
    if summary["errors"]:
        parts.append("errors (rerun the same command to retry them): " + "; ".join(summary["error_examples"]))
    if summary["torn_lines_skipped"]:
        parts.append(
            f"{summary['torn_lines_skipped']} unreadable line(s) skipped (a write cut short, or not a result record)"
        )
    return "\n".join([*parts, *sc_footnote(summary)])


def format_text(summaries: Sequence[dict[str, Any]]) -> str:
    blocks = [f"{set_title(s)}\n{text_table(detail_rows(s), detail_header(s))}\n{footnote(s)}" for s in summaries]
    return "\n\n".join(blocks)


_KIND_NAMES = {
    "sticker": "generated (stage 1)",
    "forward": "forward-optimized (stage 2)",
    "inverse": "inverse + forward (stage 3)",
}
_DIAGNOSTICS_HEADER = [
    "round", "rounds", "malformed sticker", "sticker unchanged by its refinement",
    "sticker with numbers not in the question", "inverse draft malformed", "inverse draft with such numbers",
]  # fmt: skip


def exit_lines(exits: dict[str, dict[str, int]]) -> list[str]:
    """How often SIFT's answer was right at each exit: an agreement's precision."""
    if not exits:
        return []
    cells = [
        f"{'fallback' if key == FALLBACK else 'stage ' + key} {cell['right']} of {cell['questions']}"
        for key, cell in exits.items()
    ]
    return [f"SIFT's answer right, by where it stopped: {', '.join(cells)}."]


def lone_prediction_lines(counts: dict[str, int]) -> list[str]:
    """Each prediction graded on its own, beside CoT on the same questions."""
    if not counts.get("questions"):
        return []
    line = (
        f"Each prediction alone, round 1: sticker only {counts.get('sticker_only', 0)} of {counts['questions']} "
        f"right, query + sticker {counts.get('query_sticker', 0)} (CoT {counts.get('cot', 0)})."
    )
    if unsettled := counts.get("unsettled", 0):
        line += (
            f" Where no round agreed ({unsettled}): the last round's query + sticker "
            f"{counts.get('unsettled_last_query_sticker', 0)}, the CoT fallback {counts.get('unsettled_cot', 0)}."
        )
    return [line]


def diagnostics_markdown(summary: dict[str, Any]) -> str:
    """How the runs went: the stickers per round kind, the predictions, and the
    questions SIFT and CoT each got right alone."""
    diagnostics = summary.get("diagnostics") or {}
    stickers, predictions = diagnostics.get("stickers") or {}, diagnostics.get("predictions") or {}
    if not predictions:
        return ""
    rows = [
        [
            _KIND_NAMES.get(kind, kind),
            str(counts.get("rounds", 0)),
            str(counts.get("malformed", 0)),
            "-" if kind == "sticker" else str(counts.get("unchanged", 0)),
            str(counts.get("invented_numbers", 0)),
            str(counts.get("draft_malformed", 0)) if kind == "inverse" else "-",
            str(counts.get("draft_invented_numbers", 0)) if kind == "inverse" else "-",
        ]
        for kind, counts in sorted(stickers.items(), key=lambda item: list(_KIND_NAMES).index(item[0]))
    ]
    outcomes = diagnostics.get("outcomes") or {}
    lines = [
        f"Predictions: {predictions.get('predictions', 0)}, cut off at the token limit "
        f"{predictions.get('truncated', 0)}, without an answer {predictions.get('no_answer', 0)}, served again "
        f"from the run (a repeated round) {predictions.get('repeated', 0)}; rounds that agreed on a wrong answer "
        f"{predictions.get('agreed_on_a_wrong_answer', 0)}; "
        f"CoT solutions cut off {predictions.get('cot_truncated', 0)}.",
        f"Right by SIFT only: {', '.join(outcomes.get('sift_only') or []) or 'none'}. "
        f"Right by CoT only: {', '.join(outcomes.get('cot_only') or []) or 'none'}.",
        *exit_lines(summary.get("exits") or {}),
        *lone_prediction_lines(diagnostics.get("lone_predictions") or {}),
    ]
    return "\n\n".join(["How the runs went:", markdown_table(rows, _DIAGNOSTICS_HEADER), *lines])


def format_markdown(summaries: Sequence[dict[str, Any]]) -> str:
    """The paper's table (one row per model and dataset), then one detail table per set."""
    header = ["model", "dataset", "n", "CoT", "stage 1", "stage 2", "stage 3"]
    rows = [
        [
            s["config"]["model"] + variant_text(s["config"], ", "),
            s["dataset"],
            str(s["questions"]),
            *(accuracy_text(s["columns"][c]) for c in COLUMNS),
        ]
        for s in summaries
        if "columns" in s
    ]
    parts = [
        "# SIFT evaluation",
        "Accuracy in %, with Wilson 95% intervals (means and ranges when several samples were run). "
        "After stage k, a question without consensus by then counts with the CoT answer, as in the paper.",
        markdown_table(rows, header),
    ]
    for summary in summaries:
        parts += [
            f"## {set_title(summary)}",
            markdown_table(detail_rows(summary), detail_header(summary)),
            footnote(summary).replace("\n", "  \n"),
        ]
        if diagnostics := diagnostics_markdown(summary):
            parts.append(diagnostics)
        if summary.get("variants"):
            parts.append(variants_markdown(summary["variants"]))
    parts.append(f"![accuracy against tokens per question]({PLOT_FILE})")
    return "\n\n".join(parts) + "\n"


def write_report(out_dir: str | Path, *, variants: bool = False) -> tuple[str, list[Path]]:
    """Summarize every result set in `out_dir`: (the text table, or with `variants` the
    variants' Markdown tables, and the files written)."""
    out_dir = Path(out_dir)
    summaries = summarize_sets(load_result_sets(out_dir))
    if not summaries:
        raise ValueError(f"results: no result sets in {str(out_dir)!r} (run 'sift eval --out {out_dir}' first)")
    written = [out_dir / MARKDOWN_FILE, out_dir / JSON_FILE, out_dir / PLOT_FILE]
    written[0].write_text(format_markdown(summaries), encoding="utf-8")
    written[1].write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    plot(summaries, written[2])
    if variants:
        tables = [f"{set_title(s)}\n\n{variants_markdown(s['variants'])}" for s in summaries if s.get("variants")]
        return "\n\n".join(tables), written
    return format_text(summaries), written
