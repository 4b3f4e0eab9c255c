"""Resumable results: one append-only JSONL file per (dataset, configuration).

A result set lives in the output folder as two files:

    <dataset>-<config digest>.jsonl         one record per finished (question, sample)
    <dataset>-<config digest>.config.json   the configuration the digest stands for

Each record is appended, flushed and fsynced the moment its question finishes, so a
crash (even kill -9) loses only the questions in flight. A torn last line from such a
crash is skipped on reading and sealed off before the next append. Rerunning the same
command finds the same file and skips what it holds; changing anything that can change
an answer (model, decoding, rounds, comparator, prompts) changes the digest and so
starts a new result set instead of mixing two configurations.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sift_graph import prompts
from sift_graph.context import SiftContext, setting_specs
from sift_graph.evaluation.records import record_problem
from sift_graph.locks import file_lock

RECORD_FORMAT = 3
"""Bumped when records change meaning, so that old and new never share a result set."""

CONFIG_SUFFIX = ".config.json"
SELF_CONSISTENCY = "self-consistency"
"""The `method` of a result set of sampled CoT solves (see `EvalConfig.for_self_consistency`)."""


def prompts_version() -> str:
    """Digest of every prompt template: an edited prompt is a different method."""
    texts = sorted((name, value) for name, value in vars(prompts).items() if name.isupper() and isinstance(value, str))
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class EvalConfig:
    """Everything that can change a result: the run settings that can
    (`SiftContext.result_settings`), the prompts and the record format. Not here:
    concurrency, timeouts, the API key."""

    settings: Mapping[str, Any]
    prompts: str = field(default_factory=prompts_version)
    record_format: int = RECORD_FORMAT
    method: str | None = None
    """None: CoT and SIFT per (question, sample); SELF_CONSISTENCY: CoT samples alone."""

    @classmethod
    def from_context(cls, context: SiftContext) -> EvalConfig:
        return cls(settings=context.result_settings())

    @classmethod
    def for_self_consistency(cls, context: SiftContext) -> EvalConfig:
        """The result set of self-consistency's CoT samples: the settings a direct solve
        reads (SIFT's round settings and variants change none of its samples)."""
        sift_only = {spec.name for spec in setting_specs(type(context)) if spec.sift_only}
        settings = {name: value for name, value in context.result_settings().items() if name not in sift_only}
        return cls(settings=settings, method=SELF_CONSISTENCY)

    def as_dict(self) -> dict[str, Any]:
        method = {} if self.method is None else {"method": self.method}  # absent: digests made before it stay
        return {**self.settings, "prompts": self.prompts, "record_format": self.record_format, **method}

    def digest(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def record_key(record: dict[str, Any]) -> tuple[str, int, str]:
    """What makes a record unique within a result set: question id, sample, question text."""
    return str(record["id"]), int(record["sample"]), str(record["question_sha"])


def effective_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per key, so nothing is ever counted twice: the first success wins;
    a key that only ever failed keeps its latest error (a rerun retries errors)."""
    chosen: dict[tuple[str, int, str], dict[str, Any]] = {}
    for record in records:
        key = record_key(record)
        held = chosen.get(key)
        if held is None or held["status"] != "ok":
            chosen[key] = record
    return list(chosen.values())


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(records, unreadable lines skipped). An unreadable line is what a crash mid-write
    leaves (cut anywhere, even inside a multi-byte character), or a line that is not a
    usable record (`records.record_problem`)."""
    if not path.exists():
        return [], 0
    records, unreadable = [], 0
    for raw in path.read_bytes().split(b"\n"):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            unreadable += 1
            continue
        if record_problem(record) is None:
            records.append(record)
        else:
            unreadable += 1
    return records, unreadable


class ResultStore:
    """The result set of one dataset under one configuration, in `out_dir`."""

    def __init__(self, out_dir: str | Path, dataset: str, config: EvalConfig) -> None:
        self.out_dir = Path(out_dir)
        self.dataset = dataset
        self.config = config
        stem = f"{dataset}-{config.digest()}"
        self.path = self.out_dir / f"{stem}.jsonl"
        self.config_path = self.out_dir / f"{stem}{CONFIG_SUFFIX}"
        self._file: TextIO | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold this result set for this process, its folder created: a second process
        writing the same set would do every question twice. Raises ValueError naming
        `out` when the folder cannot be used, `locks.LockHeld` when another process
        holds the set."""
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"out: {str(self.out_dir)!r} is a file, not a results folder")
        with ExitStack() as stack:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                stack.enter_context(file_lock(self.out_dir / f"{self.path.stem}.lock", f"result set {self.path}"))
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise ValueError(f"out: cannot write to results folder {str(self.out_dir)!r}: {reason}") from exc
            yield

    def records(self) -> list[dict[str, Any]]:
        return effective_records(read_records(self.path)[0])

    def done_keys(self) -> set[tuple[str, int, str]]:
        return {record_key(record) for record in self.records() if record["status"] == "ok"}

    def open(self) -> ResultStore:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            description = {"dataset": self.dataset, "digest": self.config.digest(), "config": self.config.as_dict()}
            staging = self.config_path.with_suffix(".tmp")
            staging.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
            staging.replace(self.config_path)  # never a half-written description
        torn_tail = self.path.exists() and self.path.stat().st_size > 0 and not self._ends_with_newline()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open until close()
        if torn_tail:  # seal a crash's partial line so the next record starts clean
            self._file.write("\n")
        return self

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably: after this returns, a crash cannot lose it."""
        if self._file is None:
            raise RuntimeError("ResultStore.append before open()")
        # ASCII only (non-ASCII escaped): a write cut short can tear a line, never a character.
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ResultStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ResultSet:
    dataset: str
    digest: str
    config: dict[str, Any]
    records: list[dict[str, Any]]
    torn_lines: int


def load_result_set(config_path: Path) -> ResultSet:
    """The result set a `<dataset>-<digest>.config.json` describes, with its records;
    ValueError naming the file when the description cannot be read."""
    try:
        description = json.loads(config_path.read_text(encoding="utf-8"))
        dataset, digest, config = description["dataset"], description["digest"], description["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"results: unreadable result-set description {config_path}: {exc}") from exc
    results_path = config_path.with_name(config_path.name[: -len(CONFIG_SUFFIX)] + ".jsonl")
    raw, torn = read_records(results_path)
    return ResultSet(dataset, digest, config, effective_records(raw), torn)


def result_set_descriptions(out_dir: str | Path) -> list[Path]:
    """The result-set descriptions in a folder, by name."""
    return sorted(Path(out_dir).glob(f"*{CONFIG_SUFFIX}"))


def load_result_sets(out_dir: str | Path) -> list[ResultSet]:
    """Every result set in a folder, in a stable order (dataset, then model, then digest)."""
    found = [load_result_set(config_path) for config_path in result_set_descriptions(out_dir)]
    return sorted(found, key=lambda s: (s.dataset, str(s.config.get("model")), s.digest))
