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
REFINED_STICKER = (
    "**Conditions:**\n1. Ann has 3 apples.\n2. Then Ann buys 2 more apples.\n"
    "**Question:** What is the total number of apples Ann has?"
)
"""The second forward optimization's sticker (after inverse generation): it differs from
the first, as a real refinement's would, so the last round's calls are new calls."""
INVERSE_STICKER = (
    "**Conditions:**\n1. Ann starts with 3 apples.\n2. Ann gets 2 apples.\n**Question:** How many apples now?"
)


def boxed(answer: str) -> str:
    """A short solution whose final answer is `answer`."""
    return f"Adding the apples step by step gives the total. \\boxed{{{answer}}}"


def rephrased(sticker: str, times: int) -> str:
    """`sticker` with its question asked another way: a refinement that changed it."""
    return sticker if times == 0 else sticker.replace("?", f" (reading {times})?")


_ROUNDS_AT_MOST = 1 + 2 * 16  # the first round and the most forward and inverse rounds


def script_for(sticker_answers: list[str], query_answers: list[str], direct: str = "5") -> dict[str, Any]:
    """A script whose k-th round predicts sticker_answers[k] and query_answers[k]
    (the last one repeats), and whose fallback answers `direct`. Each round's sticker
    differs from the others (generated, forward-optimized, refined after inverse
    generation, each later one rephrased again; each inverse draft too), so no round
    repeats another's calls (see `cache`)."""
    return {
        "sticker": STICKER,
        "forward": [
            FORWARD_STICKER,
            REFINED_STICKER,
            *(rephrased(REFINED_STICKER, k) for k in range(1, _ROUNDS_AT_MOST)),
        ],
        "inverse": [rephrased(INVERSE_STICKER, k) for k in range(_ROUNDS_AT_MOST)],
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
