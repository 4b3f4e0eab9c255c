"""Scripted replies for tests, benchmarks and examples: one question about Ann's apples,
its stickers, boxed answers, and a script for each of SIFT's exit paths.

    script_for(["4", "5"], ["3", "5"])   # round 1 disagrees (4 vs 3), round 2 agrees on 5
"""

from __future__ import annotations

from typing import Any

QUESTION = "Ann has 3 apples and buys 2 more. How many apples does she have?"
STICKER = (
    "**Conditions:**\n1. Ann has 3 apples.\n2. Ann buys 2 more apples.\n"
    "**Question:** How many apples does Ann have now?"
)
FORWARD_STICKER = (
    "**Conditions:**\n1. Ann has 3 apples.\n2. Ann buys 2 more apples.\n"
    "**Question:** How many apples does Ann have in total?"
)
INVERSE_STICKER = (
    "**Conditions:**\n1. Ann starts with 3 apples.\n2. Ann gets 2 apples.\n**Question:** How many apples now?"
)


def boxed(answer: str) -> str:
    """A short solution whose final answer is `answer`."""
    return f"Adding the apples step by step gives the total. \\boxed{{{answer}}}"


def script_for(sticker_answers: list[str], query_answers: list[str], direct: str = "5") -> dict[str, Any]:
    """A script whose k-th round predicts sticker_answers[k] and query_answers[k]
    (the last one repeats), and whose fallback answers `direct`."""
    return {
        "sticker": STICKER,
        "forward": FORWARD_STICKER,
        "inverse": INVERSE_STICKER,
        "predict_sticker": [boxed(a) for a in sticker_answers],
        "predict_query_sticker": [boxed(a) for a in query_answers],
        "direct": boxed(direct),
    }


EXIT_SCRIPTS: dict[str, dict[str, Any]] = {
    "round-1": script_for(["5"], ["5"]),
    "round-2": script_for(["4", "5"], ["3", "5"]),
    "round-3": script_for(["4", "5", "6"], ["3", "4", "6"]),
    "fallback": script_for(["4", "6", "8"], ["5", "7", "9"], direct="5"),
}
"""A script per exit path of the paper-default run (1 FO + 1 IG round): consensus in
round 1, 2 or 3 (3, 6 or 10 calls), or the fallback (11 calls)."""
