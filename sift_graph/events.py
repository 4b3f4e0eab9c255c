"""SIFT's streaming contract: one event per stage, sent with `stream_mode="custom"`.

    for mode, event in graph.stream(inputs, context=context, stream_mode=["custom", "values"]):
        if mode == "custom" and event["stage"] == "consensus": ...

Each stage has its own `TypedDict` and one constructor, used by the nodes that send it;
the CLI's formatter, the examples and the tests read the same shapes.

| stage        | sent when                                  | fields beyond `stage`                           |
|--------------|--------------------------------------------|-------------------------------------------------|
| `sticker`    | a round's sticker is ready (SG or FO)      | round, kind, sticker, well_formed, problems     |
| `inverse`    | inverse generation rebuilt a draft sticker | round, sticker, well_formed, problems           |
| `prediction` | one of a round's two predictions finished  | round, role, answer, truncated, cached          |
| `consensus`  | both predictions of a round are in         | round, agreed, answers, truncated               |
| `direct`     | no round agreed; the fallback answered     | answer, truncated, cached                       |
"""

from __future__ import annotations

from typing import Literal

from typing_extensions import TypedDict

from sift_graph.state import RoundKind, Sticker

PredictionRole = Literal["predict_sticker", "predict_query_sticker"]


class StickerEvent(TypedDict):
    stage: Literal["sticker"]
    round: int
    kind: RoundKind
    """How the sticker was made: `sticker` (generated), `forward`, `inverse` (IG then FO)."""
    sticker: str
    well_formed: bool
    problems: list[str]


class InverseEvent(TypedDict):
    stage: Literal["inverse"]
    round: int
    sticker: str
    """The draft rebuilt from the last solution; forward optimization comes next."""
    well_formed: bool
    problems: list[str]


class PredictionEvent(TypedDict):
    stage: Literal["prediction"]
    round: int
    role: PredictionRole
    answer: str | None
    truncated: bool
    cached: bool
    """Served without a request: the same call was made before (`cache`)."""


class ConsensusEvent(TypedDict):
    stage: Literal["consensus"]
    round: int
    agreed: bool
    answers: list[str | None]
    """[sticker-only answer, query+sticker answer]."""
    truncated: bool
    """A prediction was cut off at the token limit (so it could not agree)."""


class DirectEvent(TypedDict):
    stage: Literal["direct"]
    answer: str | None
    truncated: bool
    cached: bool
    """Served without a request: the fallback was given (an eval's CoT) or cached."""


StageEvent = StickerEvent | InverseEvent | PredictionEvent | ConsensusEvent | DirectEvent
STAGES: tuple[str, ...] = ("sticker", "inverse", "prediction", "consensus", "direct")


def sticker_event(round_number: int, kind: RoundKind, sticker: Sticker) -> StickerEvent:
    return StickerEvent(
        stage="sticker",
        round=round_number,
        kind=kind,
        sticker=sticker["text"],
        well_formed=sticker["well_formed"],
        problems=list(sticker["problems"]),
    )


def inverse_event(round_number: int, draft: Sticker) -> InverseEvent:
    return InverseEvent(
        stage="inverse",
        round=round_number,
        sticker=draft["text"],
        well_formed=draft["well_formed"],
        problems=list(draft["problems"]),
    )


def prediction_event(
    round_number: int, role: PredictionRole, answer: str | None, truncated: bool, cached: bool = False
) -> PredictionEvent:
    return PredictionEvent(
        stage="prediction", round=round_number, role=role, answer=answer, truncated=truncated, cached=cached
    )


def consensus_event(round_number: int, agreed: bool, answers: list[str | None], truncated: bool) -> ConsensusEvent:
    return ConsensusEvent(stage="consensus", round=round_number, agreed=agreed, answers=answers, truncated=truncated)


def direct_event(answer: str | None, truncated: bool, cached: bool = False) -> DirectEvent:
    return DirectEvent(stage="direct", answer=answer, truncated=truncated, cached=cached)
