"""What `sift solve` prints: each streamed stage event as a person reads it (the text
itself is `sift_graph.narration`'s, shared with `sift serve`) and the run's summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sift_graph.narration import format_event

__all__ = ["format_event", "format_summary"]


def format_summary(result: Mapping[str, Any], seconds: float) -> str:
    usage = result.get("usage") or {}
    calls = sum(counts["calls"] for counts in usage.values())
    tokens_in = sum(counts["input_tokens"] for counts in usage.values())
    tokens_out = sum(counts["output_tokens"] for counts in usage.values())
    if result.get("consensus_round"):
        how = f"consensus in round {result['consensus_round']}"
    elif "direct" in usage:
        how = "fallback: direct chain of thought"
    else:  # fallback_answer="query_sticker": no direct call
        how = "fallback: the last round's query + sticker prediction"
    return (
        f"answer: {result.get('answer') or '(none)'}  ({how})\n"
        f"calls: {calls}  tokens: {tokens_in} in, {tokens_out} out  time: {seconds:.1f} s"
    )
