"""What `sift view` reads, and only reads: result-set folders (`sift eval --out`), each
set read again when its files change, and the summary `sift report` computes for it.

A page names a set only by its id (`<dataset>-<digest>`, as its files are named), which
is looked up among the folders the deployment was started with: a client never names a
file. A description or a records file that cannot be read is a message on the page."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sift_graph.evaluation.consistency import is_self_consistency
from sift_graph.evaluation.report import (
    PLOT_FILE,
    detail_header,
    detail_rows,
    diagnostics_markdown,
    footnote,
    set_title,
    summarize_sets,
)
from sift_graph.evaluation.results import CONFIG_SUFFIX, ResultSet, load_result_set, result_set_descriptions
from sift_graph.view.questions import Record, Row, question_rows


def check_results_folder(path: str | Path) -> Path:
    """The folder, if it holds result sets; ValueError (one line) if it does not."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{str(path)!r} is not a folder of result sets (written by 'sift eval --out')")
    if not result_set_descriptions(folder):
        raise ValueError(f"{str(path)!r} holds no result sets (no *{CONFIG_SUFFIX}; run 'sift eval --out {path}')")
    return folder


@dataclass(frozen=True)
class LoadedSet:
    """A result set as the pages show it, computed once per version of its files."""

    id: str
    folder: Path
    result_set: ResultSet
    summary: dict[str, Any]
    rows: list[Row]
    records: dict[str, Record]

    @property
    def title(self) -> str:
        return set_title(self.summary)

    def report(self) -> dict[str, Any]:
        """`sift report`'s table, footnote and diagnostics for this set."""
        return {
            "header": detail_header(self.summary),
            "rows": detail_rows(self.summary),
            "footnote": footnote(self.summary).splitlines(),
            "diagnostics": markdown_blocks(diagnostics_markdown(self.summary)),
        }

    def plot_path(self) -> Path | None:
        """The folder's accuracy-vs-tokens plot, as `sift report` last drew it."""
        path = self.folder / PLOT_FILE
        return path if path.is_file() else None


def markdown_blocks(markdown: str) -> list[dict[str, Any]]:
    """The report's Markdown (paragraphs and pipe tables) as blocks a template draws."""
    blocks: list[dict[str, Any]] = []
    for block in markdown.split("\n\n") if markdown else []:
        lines = block.splitlines()
        if lines and lines[0].startswith("|"):
            cells = [
                [cell.strip().replace("\\|", "|") for cell in line.strip().strip("|").split(" | ")] for line in lines
            ]
            blocks.append({"table": True, "header": cells[0], "rows": cells[2:]})
        else:
            blocks.append({"table": False, "text": block})
    return blocks


def _version(config_path: Path) -> tuple[float, int, float, int]:
    records_path = config_path.with_name(config_path.name[: -len(CONFIG_SUFFIX)] + ".jsonl")
    stats = [path.stat() if path.exists() else None for path in (config_path, records_path)]
    return tuple(x for s in stats for x in ((s.st_mtime, s.st_size) if s else (0.0, 0)))  # type: ignore[return-value]


def set_id(config_path: Path) -> str:
    return config_path.name[: -len(CONFIG_SUFFIX)]


def load_set(config_path: Path) -> LoadedSet:
    """Read and summarize one set; ValueError naming the file if it cannot be read."""
    result_set = load_result_set(config_path)
    try:
        summary = summarize_sets([result_set])[0]
        # self-consistency's samples: its SC@k table, no SIFT rounds to list question by question
        listed = [] if is_self_consistency(result_set) else result_set.records
        rows = question_rows(listed)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        # a line that passes for a record (`records.record_problem`) but is not what the runner writes
        raise ValueError(f"results: {set_id(config_path)}.jsonl holds a foreign record ({exc!r})") from exc
    records = {row["key"]: record for row, record in zip(rows, _ok(listed), strict=True)}
    return LoadedSet(set_id(config_path), config_path.parent, result_set, summary, rows, records)


def _ok(records: list[Record]) -> list[Record]:
    return [record for record in records if record["status"] == "ok"]


@dataclass
class ResultSources:
    """The result-set folders a `sift view` was started with."""

    folders: list[Path]
    _cache: dict[Path, tuple[tuple[float, int, float, int], LoadedSet]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def descriptions(self) -> dict[str, Path]:
        """Every set's id and description file, over all folders (first folder wins)."""
        found: dict[str, Path] = {}
        for folder in self.folders:
            for path in result_set_descriptions(folder):
                found.setdefault(set_id(path), path)
        return found

    def warm(self) -> list[str]:
        """Read every set now, so that no page waits for it (GSM8K's 1,319 records take
        seconds to summarize); why each set that cannot be read cannot."""
        problems = []
        for wanted in self.descriptions():
            try:
                self.get(wanted)
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    def get(self, wanted: str) -> LoadedSet | None:
        """The set with that id (None if there is none); ValueError if unreadable.
        Read again only when its files changed since the last read."""
        path = self.descriptions().get(wanted)
        if path is None:
            return None
        version = _version(path)
        with self._lock:
            cached = self._cache.get(path)
            if cached is None or cached[0] != version:
                cached = (version, load_set(path))
                self._cache[path] = cached
            return cached[1]
