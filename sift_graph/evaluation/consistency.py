"""Self-consistency (SC), the baseline SIFT has to beat at the same tokens: small pure
functions over a result set of sampled CoT solves (`sift eval --sc K`).

SC@k votes over a question's first k samples (seeds SEED + 0 .. SEED + k - 1), so SC@1,
SC@2, SC@4, ..., SC@K all come from one set of K samples. The vote (`vote`):
- a sample cut off at the token limit, or without an answer, does not vote (a truncated
  prediction never counts as agreement in SIFT either);
- equivalent answers (the set's comparator) are one answer; the largest group wins;
- a tie goes to the group whose first sample came earliest (deterministic, and SC@1 is
  the first sample's answer);
- no vote at all is no answer: wrong.
SC@k's cost is counted as SIFT's is: the calls and the input + output tokens of the k
samples it votes over.

Only questions with all K samples finished are voted on. Paired with a SIFT result set
of the same model (`pairs_with`), the rows keep the questions both sets hold, and each
gets the exact McNemar test against that set's CoT and against SIFT after stage 3.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sift_graph.context import FallbackAnswer
from sift_graph.evaluation.records import STAGES, QuestionKey, question_key
from sift_graph.evaluation.results import SELF_CONSISTENCY, ResultSet
from sift_graph.evaluation.stats import majority_vote
from sift_graph.evaluation.summary import Grader, accuracy_cell, answer_at, paired_against

Record = dict[str, Any]
DECODING = ("temperature", "top_p", "seed")
"""Settings that may differ between an SC set and the SIFT set it is compared with."""


def is_self_consistency(result_set: ResultSet) -> bool:
    return result_set.config.get("method") == SELF_CONSISTENCY


def pairs_with(samples: ResultSet, sift: ResultSet) -> bool:
    """Whether an SC set compares with a SIFT set: same dataset, and the same model,
    token limit, grading and prompts (only the decoding may differ)."""
    if not is_self_consistency(samples) or is_self_consistency(sift) or samples.dataset != sift.dataset:
        return False
    shared = {name: value for name, value in samples.config.items() if name not in (*DECODING, "method")}
    return all(sift.config.get(name) == value for name, value in shared.items())


def vote_sizes(samples: int) -> list[int]:
    """k = 1, 2, 4, ... below `samples`, then `samples` itself."""
    sizes = [2**power for power in range(samples.bit_length()) if 2**power < samples]
    return [*sizes, samples] if samples >= 1 else []


def samples_by_question(records: Sequence[Record]) -> dict[QuestionKey, list[Record]]:
    """Each question's finished samples, in sample order, cut at the first one missing."""
    found: dict[QuestionKey, dict[int, Record]] = defaultdict(dict)
    for record in records:
        if record["status"] == "ok":
            found[question_key(record)][int(record["sample"])] = record
    groups = {}
    for key, by_sample in found.items():
        run: list[Record] = []
        while len(run) in by_sample:
            run.append(by_sample[len(run)])
        groups[key] = run
    return groups


def vote(samples: Sequence[Record], same: Grader) -> tuple[str | None, bool]:
    """The samples' majority answer and whether it is right (see the module docstring)."""
    answers = [None if sample["cot"].get("truncated") else sample["cot"]["answer"] for sample in samples]
    picked = majority_vote(answers, same)
    if picked is None:
        return None, False
    return answers[picked], bool(samples[picked]["cot"]["correct"])


def sample_tokens(sample: Record) -> int:
    return int(sample["cot"]["input_tokens"]) + int(sample["cot"]["output_tokens"])


def sc_summary(
    records: Sequence[Record],
    same: Grader,
    sift_records: Sequence[Record] | None = None,
    fallback: FallbackAnswer = "cot",
) -> dict[str, Any]:
    """SC@k rows (accuracy with its Wilson interval, calls and tokens per question) over
    the questions with all K samples; with `sift_records` (one run per question) only
    those it holds too, each row tested against its CoT and its stage 3 (`fallback`: that
    set's). `same` is answer equivalence (the set's comparator)."""
    groups = samples_by_question(records)
    most = max((len(run) for run in groups.values()), default=0)
    complete = {key: run for key, run in groups.items() if len(run) == most and most}
    reference: dict[QuestionKey, tuple[bool, bool]] | None = None
    if sift_records is not None:
        reference = {
            question_key(record): (answer_at(record, 0)[1], answer_at(record, STAGES[-1], fallback, same)[1])
            for record in sift_records
            if record["status"] == "ok" and int(record["sample"]) == 0
        }
        complete = {key: run for key, run in complete.items() if key in reference}
    keys = sorted(complete)
    rows = []
    for k in vote_sizes(most):
        outcomes = [vote(complete[key][:k], same)[1] for key in keys]
        calls = [sum(int(sample["cot"]["calls"]) for sample in complete[key][:k]) for key in keys]
        tokens = [sum(sample_tokens(sample) for sample in complete[key][:k]) for key in keys]
        row: dict[str, Any] = {
            "k": k,
            **accuracy_cell(outcomes),
            "calls_per_question": statistics.fmean(calls) if keys else None,
            "tokens_per_question": statistics.fmean(tokens) if keys else None,
        }
        if reference is not None:
            row["vs_cot"] = paired_against([reference[key][0] for key in keys], outcomes)
            row["vs_stage3"] = paired_against([reference[key][1] for key in keys], outcomes)
        rows.append(row)
    return {"samples": most, "questions": len(keys), "rows": rows}
