"""`sift report`'s plot: accuracy against input + output tokens per question, SIFT's
points (CoT and the three stages) and self-consistency's curve (SC@1, 2, 4, ...) on the
same axes, so where SIFT sits against the frontier of simply sampling more shows at a
glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sift_graph.evaluation.summary import COLUMN_LABELS, COLUMNS
from sift_graph.evaluation.variants import variant_text


def error_bars(ys: Sequence[float], cells: Sequence[dict[str, Any]]) -> list[list[float]]:
    """Below and above each point (in %), from its Wilson 95% interval or its range of runs."""
    bounds: list[tuple[float, float]] = [cell.get("ci95") or cell["range"] for cell in cells]
    return [
        [y - 100 * low for y, (low, _) in zip(ys, bounds, strict=True)],
        [100 * high - y for y, (_, high) in zip(ys, bounds, strict=True)],
    ]


def draw_line(axes: Any, cells: Sequence[dict[str, Any]], labels: Sequence[str], **style: Any) -> None:
    """One line through `cells` (accuracy against tokens), each point annotated."""
    if not cells or any(cell.get("accuracy") is None for cell in cells):
        return
    xs = [cell["tokens_per_question"] for cell in cells]
    ys = [100 * cell["accuracy"] for cell in cells]
    line = axes.errorbar(xs, ys, yerr=error_bars(ys, cells), capsize=3, **style)
    for x, y, label in zip(xs, ys, labels, strict=True):
        axes.annotate(
            label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color=line.lines[0].get_color()
        )


def draw_points(axes: Any, cells: Sequence[dict[str, Any]], **style: Any) -> None:
    """Unconnected points (each its own trade-off), labelled; cells without an accuracy
    (a variant still waiting for its rerun) are left out."""
    cells = [cell for cell in cells if cell.get("accuracy") is not None]
    if not cells:
        return
    xs = [cell["tokens_per_question"] for cell in cells]
    ys = [100 * cell["accuracy"] for cell in cells]
    points = axes.scatter(xs, ys, **style)
    for x, y, cell in zip(xs, ys, cells, strict=True):
        axes.annotate(
            cell["label"],
            (x, y),
            textcoords="offset points",
            xytext=(0, 10),
            horizontalalignment="center",  # above the point: the stage and SC labels sit to its right
            fontsize=7,
            color=points.get_facecolor()[0],
        )


def plot(summaries: Sequence[dict[str, Any]], path: Path) -> None:
    """One line per SIFT result set through CoT and the three stages, its variants that
    are not on that line (the query+sticker fallback, the number check) as points, and
    one dashed line per self-consistency set through its SC@k (error bars: Wilson 95% or
    the range of runs). A set that reruns another's questions with the number check is
    that set's number-check point, not a line of its own."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for summary in summaries:
        if summary.get("number_check_rerun_of"):
            continue  # a rerun of some questions: drawn as its paper set's number-check point
        name = f"{summary['config']['model']}{variant_text(summary['config'], ', ')} / {summary['dataset']}"
        if "columns" in summary:
            cells = [summary["columns"][column] for column in COLUMNS]
            draw_line(axes, cells, [COLUMN_LABELS[column] for column in COLUMNS], marker="o", label=f"{name}: SIFT")
        # A variant with the set's fallback is a stage budget: a point of the line already.
        off_line = [row for row in summary.get("variants") or [] if row.get("own_point")]
        draw_points(axes, off_line, marker="^", label=f"{name}: SIFT variants")
        for entry in summary.get("self_consistency") or []:
            rows = entry["rows"]
            temperature = entry["decoding"]["temperature"]
            draw_line(
                axes,
                rows,
                [f"SC@{row['k']}" for row in rows],
                marker="s",
                linestyle="--",
                label=f"{name}: self-consistency (T={temperature:g})",
            )
    axes.set_xlabel("input + output tokens per question")
    axes.set_ylabel("accuracy (%)")
    with_sc = any(summary.get("self_consistency") for summary in summaries)
    axes.set_title(f"SIFT{' and self-consistency' if with_sc else ''}: accuracy against tokens per question")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
