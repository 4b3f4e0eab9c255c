"""Prompt prefixes whose keys and values are kept, so a new prompt that starts the same
way is prefilled from where they end.

SIFT's prompts are templates: sticker generation, forward optimization and inverse
generation begin with the same instructions and worked examples for every question (314
of 346, 689 of 746 and 269 of 300 tokens with SmolLM2's tokenizer), so most prefill
work repeats. Each prefilled prompt is kept whole; when a later prompt shares a prefix
with it, that prefix is reused and the kept entry is cut down to it, so what stays is the
templates' shared parts (plus the latest prompts), within a token budget, least recently
used first out. Only the scheduler's worker thread uses it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

LayerStates = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer, (keys, values) of one sequence: [1, kv_heads, tokens, head_dim]."""

BUDGET_TOKENS = 8192
MIN_REUSE = 16
"""Shorter shared prefixes are not worth a lookup's copy."""


@dataclass(eq=False)
class _Entry:
    tokens: torch.Tensor
    states: LayerStates
    last_used: int


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens two token tensors share."""
    length = min(len(a), len(b))
    differ = (a[:length] != b[:length]).nonzero()
    return int(differ[0]) if len(differ) else length


def _cut(states: LayerStates, length: int) -> LayerStates:
    return [(keys[..., :length, :], values[..., :length, :]) for keys, values in states]


class PrefixCache:
    def __init__(self, budget_tokens: int = BUDGET_TOKENS, min_reuse: int = MIN_REUSE) -> None:
        self.budget_tokens = budget_tokens
        self.min_reuse = min_reuse
        self._entries: list[_Entry] = []
        self._clock = itertools.count()
        self.reused_tokens = 0
        """Prompt tokens that did not need a prefill (a running total)."""

    @property
    def tokens(self) -> int:
        return sum(len(entry.tokens) for entry in self._entries)

    def find(self, prompt: list[int]) -> tuple[LayerStates, int] | None:
        """The states of the longest kept prefix of `prompt` (always leaving its last token
        to compute), or None when there is none worth reusing."""
        if not self._entries:
            return None
        tokens = torch.tensor(prompt, dtype=torch.long)
        best = max(self._entries, key=lambda entry: common_prefix(entry.tokens, tokens))
        shared = min(common_prefix(best.tokens, tokens), len(prompt) - 1)
        if shared < self.min_reuse:
            return None
        best.last_used = next(self._clock)
        if shared < len(best.tokens):  # keep only what prompts share
            best.tokens, best.states = (
                best.tokens[:shared],
                [(k.clone(), v.clone()) for k, v in _cut(best.states, shared)],
            )
        self.reused_tokens += shared
        return _cut(best.states, shared), shared

    def add(self, prompt: list[int], states: LayerStates) -> None:
        """Keep a prefilled prompt's states (copied), evicting the least recently used."""
        if len(prompt) > self.budget_tokens:
            return
        tokens = torch.tensor(prompt, dtype=torch.long)
        kept = [(keys.clone(), values.clone()) for keys, values in states]
        self._entries.append(_Entry(tokens, kept, next(self._clock)))
        while self.tokens > self.budget_tokens:
            self._entries.remove(min(self._entries, key=lambda entry: entry.last_used))
