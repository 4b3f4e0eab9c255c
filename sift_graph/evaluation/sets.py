"""The summaries `sift report` shows, one per result set in a folder: a SIFT set with
the self-consistency sets that compare with it (`consistency.pairs_with`) and the
variants its records answer (`variants`); an SC set that compares with none, alone."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from sift_graph.answers import answers_agree
from sift_graph.context import FallbackAnswer
from sift_graph.evaluation.consistency import DECODING, is_self_consistency, pairs_with, sc_summary
from sift_graph.evaluation.number_check import is_number_check_of
from sift_graph.evaluation.results import ResultSet
from sift_graph.evaluation.summary import summarize, wall_time
from sift_graph.evaluation.variants import variant_rows


def summarize_sets(result_sets: Sequence[ResultSet]) -> list[dict[str, Any]]:
    """One summary per SIFT result set, with the SC sets that compare with it (a set of
    one run per question: SC is paired question by question); then one per SC set shown
    beside none."""
    sift_sets = [result_set for result_set in result_sets if not is_self_consistency(result_set)]
    sc_sets = [result_set for result_set in result_sets if is_self_consistency(result_set)]
    summaries: list[dict[str, Any]] = []
    shown: set[str] = set()  # the SC sets shown beside a SIFT set
    for result_set in sift_sets:
        comparator = result_set.config.get("comparator", "math")
        fallback = result_set.config.get("fallback_answer", "cot")
        same = partial(answers_agree, comparator=comparator)
        summary = {**set_header(result_set), **summarize(result_set.records, comparator, fallback)}
        if rerun_of := [other.digest for other in sift_sets if is_number_check_of(result_set, other)]:
            summary["number_check_rerun_of"] = rerun_of  # its records are a row of those sets' variants
        if summary["samples"] == 1:
            reruns = number_check_reruns(result_set, result_sets)
            summary["variants"] = variant_rows(result_set.records, same, reruns, result_set.config)
        paired = [sc for sc in sc_sets if pairs_with(sc, result_set)]
        if paired and summary["samples"] == 1:
            summary["self_consistency"] = [sc_entry(sc, result_set.records, fallback) for sc in paired]
            shown.update(sc.digest for sc in paired)
        summaries.append(summary)
    for sc in sc_sets:
        if sc.digest not in shown:
            graded = sum(record["status"] == "ok" for record in sc.records)
            summaries.append({**set_header(sc), "graded": graded, "self_consistency": [sc_entry(sc, None, "cot")]})
    return summaries


def number_check_reruns(paper: ResultSet, result_sets: Sequence[ResultSet]) -> list[dict[str, Any]]:
    """The records of the sets that rerun `paper` with the number check (`variant_rows`
    makes the row only for a set of the paper's method)."""
    return [record for other in result_sets if is_number_check_of(other, paper) for record in other.records]


def set_header(result_set: ResultSet) -> dict[str, Any]:
    return {
        "dataset": result_set.dataset,
        "config_digest": result_set.digest,
        "config": result_set.config,
        "torn_lines_skipped": result_set.torn_lines,
    }


def sc_entry(sc: ResultSet, sift_records: Sequence[dict[str, Any]] | None, fallback: FallbackAnswer) -> dict[str, Any]:
    """An SC set's rows, paired with a SIFT set's records (None: alone)."""
    same = partial(answers_agree, comparator=sc.config.get("comparator", "math"))
    return {
        "config_digest": sc.digest,
        "decoding": {name: sc.config.get(name) for name in DECODING},
        "wall_seconds": wall_time(sc.records),
        "errors": sum(record["status"] != "ok" for record in sc.records),
        **sc_summary(sc.records, same, sift_records, fallback),
    }
