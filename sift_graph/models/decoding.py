"""The one rule of which calls are sampled (a leaf: no engine behind it).

A call at temperature 0 is greedy: it takes the most likely token, so `top_p` and `seed`
do nothing to it. Every place that sends, decodes, seeds or digests a call asks here.
"""

from __future__ import annotations


def is_sampled(temperature: float | None) -> bool:
    """Whether a call at `temperature` samples; else it is greedy (`top_p` and `seed` unused)."""
    return temperature is not None and temperature > 0
