"""A round as a card: its sticker diffed word by word against the previous round's,
numbers the question does not state marked, both predictions side by side. Small pure
functions over a round as a result record keeps it (`records.round_detail`), so a
stored evaluation and a checkpointed run draw the same cards."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sift_graph.evaluation.records import PREDICTION_ROLES, STAGE_OF_ROUND_KIND
from sift_graph.sticker import invented_numbers, numbers_in

ROUND_KIND_LABELS = {
    "sticker": "stage 1: sticker generated",
    "forward": "stage 2: forward optimization",
    "inverse": "stage 3: inverse generation + forward optimization",
}
PREDICTION_LABELS = ("sticker only (P_S)", "query + sticker (P_QS)")
_WORDS = re.compile(r"\s+|[^\s]+")
_LIST_MARKER = re.compile(r"\d+[.)]")

Piece = dict[str, Any]
"""One word or run of spaces: {"text", "change": "same" | "added" | "removed", "invented": bool}."""


def words_of(text: str) -> list[str]:
    """The text cut into words and the whitespace between them (joined back: the text)."""
    return _WORDS.findall(text)


def states_one_of(word: str, numbers: set[str] | frozenset[str]) -> bool:
    return bool(numbers and not word.isspace() and numbers_in(word) & numbers)


def is_list_marker(words: Sequence[str], index: int) -> bool:
    """A condition's number ("3.") at the start of a line: not a fact it states."""
    starts_line = index == 0 or "\n" in words[index - 1]
    return starts_line and _LIST_MARKER.fullmatch(words[index]) is not None


def word_diff(before: str | None, after: str, invented: set[str] | frozenset[str] = frozenset()) -> list[Piece]:
    """`after` against `before` word by word: each piece same, added or removed (no
    `before`: all of `after`, unchanged); a word stating one of `invented` is marked."""

    def pieces(words: Sequence[str], start: int, end: int, change: str) -> list[Piece]:
        return [
            {
                "text": words[i],
                "change": change,
                "invented": change != "removed" and states_one_of(words[i], invented) and not is_list_marker(words, i),
            }
            for i in range(start, end)
        ]

    new = words_of(after)
    if before is None:
        return pieces(new, 0, len(new), "same")
    old = words_of(before)
    diffed: list[Piece] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, old_start, old_end, new_start, new_end in matcher.get_opcodes():
        if op in ("delete", "replace"):
            diffed += pieces(old, old_start, old_end, "removed")
        if op in ("insert", "replace", "equal"):
            diffed += pieces(new, new_start, new_end, "same" if op == "equal" else "added")
    return diffed


def usage_lines(usage: Mapping[str, Mapping[str, int]] | None) -> list[dict[str, Any]]:
    """A round's calls by role (in the order they ran): calls, tokens in and out, and
    how many were served again within the run or from the call cache."""
    return [
        {
            "role": role,
            "calls": int(counts.get("calls", 0)),
            "input_tokens": int(counts.get("input_tokens", 0)),
            "output_tokens": int(counts.get("output_tokens", 0)),
            "reused": int(counts.get("reused_calls", 0)),
            "stored": int(counts.get("stored_calls", 0)),
        }
        for role, counts in (usage or {}).items()
    ]


def round_card(detail: Mapping[str, Any], previous: Mapping[str, Any] | None, question: str) -> dict[str, Any]:
    """One round's card: `detail` is the round as `records.round_detail` keeps it (plus
    its `usage` and its nodes' step `times` where a checkpointed run has them), `previous` the round before it."""
    invented = invented_numbers(detail["sticker"], question) if question else set()
    before = previous["sticker"] if previous else None
    draft = detail.get("draft")
    predictions = [
        {
            "label": label,
            "role": role,
            "answer": detail["answers"][index],
            "solution": (detail.get("solutions") or [None, None])[index],
            "truncated": bool(detail["truncated"][index]),
            "cached": bool((detail.get("cached") or [False, False])[index]),
            "repeated": bool((detail.get("repeated") or [False, False])[index]),
        }
        for index, (label, role) in enumerate(zip(PREDICTION_LABELS, PREDICTION_ROLES, strict=True))
    ]
    return {
        "round": detail["round"],
        "kind": detail["kind"],
        "stage": STAGE_OF_ROUND_KIND[detail["kind"]],
        "label": ROUND_KIND_LABELS[detail["kind"]],
        "agreed": bool(detail["agreed"]),
        "unchanged": before is not None and before == detail["sticker"],
        # an inverse round's sticker against its draft: forward optimization's edits
        "sticker": word_diff(before if draft is None else draft, detail["sticker"], invented),
        "sticker_problems": detail.get("sticker_problems") or [],
        "invented": sorted(invented),
        # an inverse round's rebuild, against the sticker it replaced
        "draft": None
        if draft is None
        else word_diff(before, draft, invented_numbers(draft, question) if question else set()),
        "draft_problems": detail.get("draft_problems") or [],
        "predictions": predictions,
        "usage": usage_lines(detail.get("usage")),
        "times": detail.get("times") or [],
    }


def round_cards(rounds: Sequence[Mapping[str, Any]], question: str) -> list[dict[str, Any]]:
    """Every round's card, each diffed against the round before it."""
    details = [detail for detail in rounds if "sticker" in detail]
    return [round_card(detail, details[index - 1] if index else None, question) for index, detail in enumerate(details)]
