"""What `sift solve` prints: each streamed stage event as a person reads it (the text
itself is `sift_graph.narration`'s, shared with `sift serve`) and the run's summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sift_graph.narration import format_event
from sift_graph.state import total_usage

__all__ = ["format_event", "format_summary"]


def format_summary(result: Mapping[str, Any], seconds: float) -> str:
    usage = result.get("usage") or {}
    total = total_usage(usage)
    calls, tokens_in, tokens_out = total["calls"], total["input_tokens"], total["output_tokens"]
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
