"""Each row's next token under its own decoding settings, within one batch.

A greedy row takes the arg-max of its logits, exactly as `generate` does (on a tie, the
lowest token id). Sampled rows are grouped by (temperature, top_p), so a batch mixing
greedy calls and calls sampled at different settings honours each one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

Decoding = tuple[float, float | None]
"""(temperature, top_p): temperature 0 is greedy; top_p None (or 1) keeps every token."""


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Scores with the tokens outside the nucleus set to -inf: the smallest set of most
    likely tokens whose probability reaches `top_p` (at least one token), as
    transformers' `TopPLogitsWarper` keeps them."""
    ascending, order = torch.sort(scores, descending=False, dim=-1)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p)
    drop[..., -1:] = False
    return scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def next_tokens(logits: torch.Tensor, decodings: Sequence[Decoding]) -> torch.Tensor:
    """One token per row of `logits` ([rows, vocab], fp32), row i decoded by `decodings[i]`."""
    tokens = logits.argmax(dim=-1)
    groups: dict[Decoding, list[int]] = defaultdict(list)
    for row, (temperature, top_p) in enumerate(decodings):
        if temperature > 0:
            groups[(temperature, top_p)].append(row)
    for (temperature, top_p), rows in groups.items():
        index = torch.tensor(rows, dtype=torch.long, device=logits.device)
        scores = logits[index] / temperature
        if top_p is not None and top_p < 1:
            scores = top_p_filter(scores, top_p)
        tokens[index] = torch.multinomial(scores.softmax(dim=-1), num_samples=1).squeeze(-1)
    return tokens
