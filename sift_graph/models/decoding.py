"""Decoding rules every layer shares: which calls are sampled, the default token limit
(a leaf: no engine behind it).

A call at temperature 0 is greedy: it takes the most likely token, so `top_p` and `seed`
do nothing to it. Every place that sends, decodes, seeds or digests a call asks here.
"""

from __future__ import annotations

DEFAULT_MAX_TOKENS = 1024
"""New tokens a call may generate unless its run says otherwise (`SiftContext.max_tokens`)."""


def is_sampled(temperature: float | None) -> bool:
    """Whether a call at `temperature` samples; else it is greedy (`top_p` and `seed` unused)."""
    return temperature is not None and temperature > 0
