"""The graph's state: what goes in, what comes out, and what SIFT keeps in between.

Everything here is plain JSON-able data (TypedDicts of str/int/bool/list/dict) so that
checkpoints serialize cheaply and a run's output can be dumped as one JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired

from langgraph.channels import DeltaChannel
from typing_extensions import TypedDict

Role = Literal["sticker", "predict_sticker", "predict_query_sticker", "forward", "inverse", "direct"]
ROLES: tuple[Role, ...] = (
    "sticker",
    "predict_sticker",
    "predict_query_sticker",
    "forward",
    "inverse",
    "direct",
)

TAG_PREFIX = "sift:"
"""Every model call carries the tag `sift:<role>`, so tracing, accounting and the
scripted test model can tell the six kinds of calls apart."""


def role_tag(role: Role) -> str:
    return f"{TAG_PREFIX}{role}"


def role_of_tags(tags: list[str]) -> str | None:
    """The role a call's tags name, or None unless exactly one `sift:<role>` tag is there."""
    roles = [tag[len(TAG_PREFIX) :] for tag in tags if tag.startswith(TAG_PREFIX)]
    return roles[0] if len(roles) == 1 else None


RoundKind = Literal["sticker", "forward", "inverse"]
"""How a round's sticker was made: generated (SG), forward-optimized (FO), or
inverse-generated then forward-optimized (IG + FO)."""


class Sticker(TypedDict):
    """A parsed Sticker. `text` is what the predictions see."""

    text: str
    conditions: list[str]
    question: str
    well_formed: bool
    problems: list[str]
    """Why the sticker is malformed (empty when `well_formed`)."""


class Prediction(TypedDict):
    """One chain-of-thought solve and the final answer extracted from it."""

    text: str
    answer: str | None
    reasoning: str | None
    """A reasoning model's thinking (`<think>` block or reasoning field), kept apart."""
    truncated: bool
    """The model stopped at its token limit: such an answer never counts as agreement."""
    cached: NotRequired[bool]
    """Served without a request: the same call made earlier (in this run, or found in
    the call cache), or the fallback given as input. Absent in runs of earlier versions."""


USAGE_COUNTERS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "reused_calls",
    "stored_calls",
    "continued_calls",
    "continued_tokens",
)


class RoleUsage(TypedDict):
    """One role's model calls. `calls` and the tokens are what the method spent; a call
    made again within a run is served free (`reused_calls`), and one found in the
    persistent call cache is counted at its original cost but made no request
    (`stored_calls`). The two cache counters are absent in runs of earlier versions."""

    calls: int
    input_tokens: int
    output_tokens: int
    reused_calls: NotRequired[int]
    stored_calls: NotRequired[int]
    continued_calls: NotRequired[int]
    """Calls that continued the partial reply an interrupt had left (counted in `calls`
    once: the tokens of both parts are in `output_tokens`, once each)."""
    continued_tokens: NotRequired[int]
    """Of `output_tokens`, those the continued calls' interrupted tries had generated."""


class RoundRecord(TypedDict):
    """One consensus round, kept so a run can be explained afterwards."""

    round: int
    kind: RoundKind
    sticker: Sticker
    predict_sticker: Prediction
    predict_query_sticker: Prediction
    agreed: bool
    usage: dict[str, RoleUsage]
    """The model calls this round made, by role: making its sticker, then its predictions."""
    draft: NotRequired[Sticker | None]
    """An inverse round's sticker as inverse generation rebuilt it, before forward
    optimization corrected it (None in other rounds; absent in runs of earlier versions)."""


def role_usage(**counts: int) -> RoleUsage:
    """A RoleUsage (missing counters 0; the cache counters only when not 0, so a run
    that no cache served reads as it always did)."""
    usage = RoleUsage(
        calls=counts.get("calls", 0),
        input_tokens=counts.get("input_tokens", 0),
        output_tokens=counts.get("output_tokens", 0),
    )
    if reused := counts.get("reused_calls", 0):
        usage["reused_calls"] = reused
    if stored := counts.get("stored_calls", 0):
        usage["stored_calls"] = stored
    if continued := counts.get("continued_calls", 0):
        usage["continued_calls"] = continued
    if continued_tokens := counts.get("continued_tokens", 0):
        usage["continued_tokens"] = continued_tokens
    return usage


def counter(usage: Mapping[str, Any], name: str) -> int:
    """One counter of a RoleUsage (0 when a run of an earlier version lacks it)."""
    return int(usage.get(name, 0))


def merge_usage(left: dict[str, RoleUsage] | None, right: dict[str, RoleUsage] | None) -> dict[str, RoleUsage]:
    """Reducer: add per-role counters (the two predictions report in the same step)."""
    merged = {role: role_usage(**counts) for role, counts in (left or {}).items()}
    for role, counts in (right or {}).items():
        base = merged.get(role, role_usage())
        merged[role] = role_usage(**{name: counter(base, name) + counter(counts, name) for name in USAGE_COUNTERS})
    return merged


def total_usage(usage: Mapping[str, Mapping[str, Any]] | None) -> RoleUsage:
    """Every counter of `usage` summed over its roles: what the whole run (or round) spent."""
    roles = (usage or {}).values()
    return role_usage(**{name: sum(counter(counts, name) for counts in roles) for name in USAGE_COUNTERS})


def usage_since(total: dict[str, RoleUsage], spent: list[dict[str, RoleUsage]]) -> dict[str, RoleUsage]:
    """`total` minus every counter in `spent`: the calls made since those were counted
    (a round's own calls are the run's usage minus the earlier rounds')."""
    earlier = merge_usage(None, None)
    for usage in spent:
        earlier = merge_usage(earlier, usage)
    left: dict[str, RoleUsage] = {}
    for role, counts in total.items():
        before = earlier.get(role, role_usage())
        since = role_usage(**{name: counter(counts, name) - counter(before, name) for name in USAGE_COUNTERS})
        if any(since.values()):
            left[role] = since
    return left


def append_rounds(rounds: list[RoundRecord], writes: Sequence[list[RoundRecord]]) -> list[RoundRecord]:
    """Reducer of `rounds`: each write appends its records. `rounds` is a delta channel:
    a checkpoint stores the step's new records, not the whole list again, so the
    store grows with the rounds run, not with their square."""
    return [*rounds, *(record for write in writes for record in write)]


MAX_QUESTION_CHARS = 100_000
"""The longest question a run takes (earlier turns of a chat included): about 25,000
tokens, past any benchmark's question, so that one request cannot fill the checkpoint
store or a model's context with a megabyte of text."""


def validate_question(question: Any) -> str:
    """The question, stripped; ValueError naming the field unless it is non-empty text of
    at most MAX_QUESTION_CHARS characters that can be written as UTF-8 (no lone surrogate)."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question: expected a non-empty string")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"question: {len(question)} characters, more than the {MAX_QUESTION_CHARS} a run takes")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"question: not valid Unicode text (a lone surrogate at character {exc.start})") from None
    return question.strip()


def keep_question(current: str, writes: Sequence[str]) -> str:
    """Reducer of `question`: the run's input, checked as it is written, so that a bad
    question fails the run before anything is stored. `question` is a delta channel: the
    store keeps the input's one write of it, not a copy in every checkpoint."""
    for question in writes:
        validate_question(question)
    return writes[-1] if writes else current


class SiftInput(TypedDict):
    question: Annotated[str, DeltaChannel(keep_question)]
    fallback: NotRequired[Prediction]
    """A direct chain-of-thought solve of the question made beforehand (say, an eval's
    CoT baseline): if no round agrees, it is the answer, with no call of its own."""


class SiftOutput(TypedDict):
    answer: str | None
    """The extracted final answer of the chosen prediction."""
    response: str
    """Full text of the chosen prediction (P_QS on agreement, else the direct solve, or
    the last round's P_QS with `fallback_answer="query_sticker"`)."""
    consensus_round: int | None
    """1-based round that reached consensus, or None when the fallback answered."""
    sticker: Sticker | None
    """The last sticker the run used."""
    rounds: Annotated[list[RoundRecord], DeltaChannel(append_rounds)]
    usage: Annotated[dict[str, RoleUsage], merge_usage]


class SiftState(SiftInput, SiftOutput, total=False):
    """Working state. Keys beyond input/output are SIFT's scratch space."""

    round_kind: RoundKind
    """Kind of the sticker the pending predictions use."""
    draft_sticker: Sticker | None
    """Inverse generation's sticker, waiting for forward optimization."""
    predict_sticker: Prediction | None
    predict_query_sticker: Prediction | None
    run_token: str
    """Names this run's layer of the call cache (`cache.RunCache`), set by its first call."""


OUTPUT_KEYS: tuple[str, ...] = tuple(SiftOutput.__annotations__)


def run_finished(values: Mapping[str, Any]) -> bool:
    """Whether a run's saved state is that of a finished run: it answered (by consensus
    or by the fallback; both set `response`, even to an empty text). An empty `next`
    alone does not say so: a run interrupted after a step's writes were saved, but
    before the checkpoint that applies them, has no `next` either."""
    return "response" in values


def output_of(state: dict[str, Any]) -> dict[str, Any]:
    """The graph's output (SiftOutput) out of a full state, e.g. a `values` stream chunk."""
    return {key: state.get(key) for key in OUTPUT_KEYS}
