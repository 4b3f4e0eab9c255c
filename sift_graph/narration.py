"""Stage events (`events`) as the lines a person reads: what `sift solve` prints and what
`sift serve` streams as the model's visible reasoning."""

from __future__ import annotations

from sift_graph.events import StageEvent

_KIND_LABEL = {
    "sticker": "generated",
    "forward": "forward-optimized",
    "inverse": "inverse-generated, then forward-optimized",
}
_ROLE_LABEL = {"predict_sticker": "answer from sticker", "predict_query_sticker": "answer from query+sticker"}


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines()) or "    (empty)"


def _malformed(well_formed: bool, problems: list[str]) -> str:
    return "" if well_formed else f"  (malformed: {'; '.join(problems)})"


def _cached(cached: bool) -> str:
    return "  (cached: no request)" if cached else ""


def format_event(event: StageEvent) -> str:
    """One streamed stage event as the lines a person reads."""
    if event["stage"] == "sticker":
        how = f"sticker ({_KIND_LABEL[event['kind']]}){_malformed(event['well_formed'], event['problems'])}"
        return f"[round {event['round']}] {how}:\n{_indent(event['sticker'])}"
    if event["stage"] == "inverse":
        how = f"sticker rebuilt from the last solution{_malformed(event['well_formed'], event['problems'])}"
        return f"[round {event['round']}] {how}:\n{_indent(event['sticker'])}"
    if event["stage"] == "prediction":
        cut = "  (cut off at the token limit)" if event["truncated"] else ""
        label = f"[round {event['round']}] {_ROLE_LABEL[event['role']]}"
        return f"{label}: {event['answer'] or '(none)'}{cut}{_cached(event.get('cached', False))}"
    if event["stage"] == "consensus":
        first, second = (answer or "(none)" for answer in event["answers"])
        verdict = "consensus" if event["agreed"] else "no consensus"
        why = "  (a prediction was cut off at the token limit)" if event["truncated"] and not event["agreed"] else ""
        return f"[round {event['round']}] {verdict}: {first} vs {second}{why}"
    answer = event["answer"] or "(none)"
    return f"[fallback] no round agreed; direct chain-of-thought answer: {answer}{_cached(event.get('cached', False))}"
