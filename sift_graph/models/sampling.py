"""Each row's next token under its own decoding settings, within one batch.

A greedy row takes the arg-max of its logits, exactly as `generate` does (on a tie, the
lowest token id). Sampled rows are grouped by (temperature, top_p), so a batch mixing
greedy calls and calls sampled at different settings honours each one. A row with a
generator of its own (a call given a `seed`) draws from it alone, so its reply does not
depend on what else is in the batch or on the process's global random state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from sift_graph.models.decoding import is_sampled

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


def next_tokens(
    logits: torch.Tensor,
    decodings: Sequence[Decoding],
    generators: Sequence[torch.Generator | None] | None = None,
) -> torch.Tensor:
    """One token per row of `logits` ([rows, vocab], fp32), row i decoded by `decodings[i]`
    and, when sampled, drawn from `generators[i]` (None: the global generator)."""
    tokens = logits.argmax(dim=-1)
    groups: dict[Decoding, list[int]] = defaultdict(list)
    for row, (temperature, top_p) in enumerate(decodings):
        if is_sampled(temperature):
            groups[(temperature, top_p)].append(row)
    for (temperature, top_p), rows in groups.items():
        index = torch.tensor(rows, dtype=torch.long, device=logits.device)
        scores = logits[index] / temperature
        if top_p is not None and top_p < 1:
            scores = top_p_filter(scores, top_p)
        probabilities = scores.softmax(dim=-1)
        own = [generators[row] if generators else None for row in rows]
        if not any(own):
            tokens[index] = torch.multinomial(probabilities, num_samples=1).squeeze(-1)
            continue
        for position, (row, generator) in enumerate(zip(rows, own, strict=True)):
            tokens[row] = torch.multinomial(probabilities[position], num_samples=1, generator=generator)[0]
    return tokens
