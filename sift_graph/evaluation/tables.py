"""Table cells and tables as text and Markdown, for `sift report` and `sift eval`: an
accuracy with its interval, a paired test, and the self-consistency and variants rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sift_graph.evaluation.variants import PAPER


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def accuracy_text(cell: dict[str, Any]) -> str:
    """ "74.4 [71.9, 76.7]" (Wilson 95%), or "74.4 (72.0-76.1 over 10 runs)" for a mean."""
    if cell.get("accuracy") is None:
        return "-"
    if "ci95" in cell:
        low, high = cell["ci95"]
        return f"{percent(cell['accuracy'])} [{percent(low)}, {percent(high)}]"
    low, high = cell["range"]
    return f"{percent(cell['accuracy'])} ({percent(low)}-{percent(high)} over {cell['runs']} runs)"


def paired_text(test: dict[str, Any]) -> str:
    ours, theirs = ("this_only", "reference_only") if "this_only" in test else ("sift_only", "cot_only")
    return f"{test[ours]} vs {test[theirs]}, p = {test['p_value']:.3g}"


def per_question_text(cell: dict[str, Any], key: str, digits: int) -> str:
    return "-" if cell.get(key) is None else f"{cell[key]:.{digits}f}"


def decoding_text(decoding: dict[str, Any]) -> str:
    """ "T=0.7, top-p 0.95, seed 0" """
    text = f"T={decoding['temperature']:g}"
    if decoding.get("top_p"):
        text += f", top-p {decoding['top_p']:g}"
    return text + (f", seed {decoding['seed']}" if decoding.get("seed") is not None else "")


def sc_rows(summary: dict[str, Any]) -> list[list[str]]:
    """SC@k rows: method, accuracy, -, calls/q, tokens/q, McNemar vs CoT and vs stage 3."""
    rows = []
    for entry in summary.get("self_consistency") or []:
        for row in entry["rows"]:
            rows.append(
                [
                    f"SC@{row['k']} ({decoding_text(entry['decoding'])})",
                    accuracy_text(row),
                    "-",
                    per_question_text(row, "calls_per_question", 2),
                    per_question_text(row, "tokens_per_question", 0),
                    paired_text(row["vs_cot"]) if "vs_cot" in row else "-",
                    paired_text(row["vs_stage3"]) if "vs_stage3" in row else "-",
                ]
            )
    return rows


def text_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])


VARIANTS_HEADER = [
    "variant", "sift eval flags", "accuracy % [95% CI]", "calls/q", "tokens/q",
    "McNemar vs CoT (variant-only vs CoT-only)", "McNemar vs the paper's method (variant-only vs paper-only)",
]  # fmt: skip
OWN_RUN_HEADER = "McNemar vs this set's run (variant-only vs run-only)"


def variants_markdown(variants: Sequence[dict[str, Any]]) -> str:
    """The variants the records answer without a new call, and the number check from a
    rerun of the questions it changes, each tested against CoT and against the set's own
    run (the paper's method, or the set's settings) on the same questions."""
    rows = [
        [
            row["variant"],
            f"`{row['flags']}`" if row["flags"] else "-",
            accuracy_text(row) if "rerun" not in row or not row["rerun"]["missing"] else rerun_text(row["rerun"]),
            per_question_text(row, "calls_per_question", 2),
            per_question_text(row, "tokens_per_question", 0),
            paired_text(row["vs_cot"]) if "vs_cot" in row else "-",
            paired_text(row["vs_paper"]) if "vs_paper" in row else "-",
        ]
        for row in variants
    ]
    intro = (
        "Variants read off these records (no new call: a smaller stage budget's rounds are the "
        "first rounds here, and the query+sticker fallback is the last round's prediction); the "
        "number check from a rerun of only the questions where it changes a sticker:"
    )
    header = VARIANTS_HEADER
    if not any(row.get("reference") and row["variant"] == PAPER.name for row in variants):
        intro = (
            "Variants read off these records (no new call), each with the flags to add to this set's "
            "`sift eval` command:"
        )
        header = [*VARIANTS_HEADER[:-1], OWN_RUN_HEADER]
    parts = [intro, markdown_table(rows, header)]
    for row in variants:
        if "rerun" in row:
            parts.append(rerun_note(row))
    return "\n\n".join(parts)


def rerun_text(rerun: dict[str, Any]) -> str:
    done = len(rerun["needed"]) - len(rerun["missing"])
    return f"needs a rerun ({done} of {len(rerun['needed'])} done)"


def rerun_note(row: dict[str, Any]) -> str:
    """Which questions the row reran, whether the reruns repeated the run's shared rounds,
    and the flags that rerun the ones still missing."""
    needed, missing = row["rerun"]["needed"], row["rerun"]["missing"]
    text = (
        f"{row['variant']}: it changes a sticker in {len(needed)} of these questions, rerun with "
        f"`{row['flags']}`; on the others a run with it makes the same calls as these records (on an "
        "engine that repeats its greedy calls), so they are read off them."
    )
    done, same = len(needed) - len(missing), row["rerun"]["same_before_check"]
    if done:
        text += f" The reruns made these records' rounds up to the check's first change in {same} of the {done} done"
    if done and same < done:
        text += (
            ": where they did not, the engine did not repeat the run's calls (another build, its prompt cache), so "
            "on those questions the row compares runs of two engines, not the check alone."
        )
    elif done:
        text += "."
    if missing:
        text += f" Still to rerun: add `{row['flags']} --ids {','.join(missing)}` to this set's `sift eval` command."
    return text
