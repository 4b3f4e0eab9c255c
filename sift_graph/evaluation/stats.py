"""Honest statistics for small test sets: small pure functions, no dependencies.

- `wilson_interval`: the Wilson score interval for a proportion. Unlike the normal
  approximation it stays inside [0, 1] and behaves at 0/n and n/n, which is where small
  evaluations live.
- `mcnemar_exact`: the exact (binomial) McNemar test for two methods graded on the same
  questions. Only discordant questions carry information: under "no difference" each one
  is equally likely to favour either method.
- `majority_vote`: self-consistency over sampled answers, with answer equivalence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval (low, high) for `successes` out of `n`; (0, 1) when n == 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"successes: expected 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Exact ends where the algebra gives them (0/n: low 0; n/n: high 1), not float dust.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    `only_first`: questions the first method got right and the second wrong; `only_second`
    the reverse. p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2).
    """
    if only_first < 0 or only_second < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_first} and {only_second}")
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, k) for k in range(min(only_first, only_second) + 1)) / 2**n
    return min(1.0, 2 * tail)


def discordant_pairs(first: Sequence[bool], second: Sequence[bool]) -> tuple[int, int]:
    """(first right & second wrong, first wrong & second right) over paired outcomes."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes differ in length: {len(first)} vs {len(second)}")
    only_first = sum(1 for a, b in zip(first, second, strict=True) if a and not b)
    only_second = sum(1 for a, b in zip(first, second, strict=True) if b and not a)
    return only_first, only_second


def majority_vote(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> int | None:
    """Index of a representative of the largest group of equivalent answers, or None
    when no answer was given. Ties go to the group that appeared first; missing
    answers never vote."""
    groups: list[list[int]] = []
    for index, answer in enumerate(answers):
        if answer is None or not answer.strip():
            continue
        for group in groups:
            if same(answers[group[0]], answer):  # type: ignore[arg-type]
                group.append(index)
                break
        else:
            groups.append([index])
    if not groups:
        return None
    best = max(groups, key=len)  # max keeps the first of equal-size groups
    return best[0]
