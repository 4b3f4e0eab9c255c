"""The streaming contract: every event SIFT streams has exactly the keys of its stage's
TypedDict in `sift_graph.events`, and the constructors build what the graph sends."""

from __future__ import annotations

import typing

import pytest

from sift_graph import SiftContext
from sift_graph.events import (
    STAGES,
    ConsensusEvent,
    DirectEvent,
    InverseEvent,
    PredictionEvent,
    StickerEvent,
    consensus_event,
    direct_event,
    prediction_event,
)
from sift_graph.testing import EXIT_SCRIPTS, QUESTION, ScriptedChatModel

SHAPES = {
    "sticker": StickerEvent,
    "inverse": InverseEvent,
    "prediction": PredictionEvent,
    "consensus": ConsensusEvent,
    "direct": DirectEvent,
}


def streamed(graph, script) -> list[dict]:
    model = ScriptedChatModel(script=script)
    return list(graph.stream({"question": QUESTION}, context=SiftContext(model=model), stream_mode="custom"))


def test_every_stage_has_a_shape_tagged_with_its_name():
    assert set(SHAPES) == set(STAGES)
    for stage, shape in SHAPES.items():
        assert typing.get_args(typing.get_type_hints(shape)["stage"]) == (stage,)


@pytest.mark.parametrize("path", list(EXIT_SCRIPTS))
def test_every_streamed_event_has_exactly_its_stage_keys(graph, path):
    events = streamed(graph, EXIT_SCRIPTS[path])
    assert events, "nothing streamed"
    for event in events:
        shape = SHAPES[event["stage"]]
        assert set(event) == set(typing.get_type_hints(shape)), event


def test_the_constructors_build_what_the_graph_sends(graph):
    events = streamed(graph, EXIT_SCRIPTS["fallback"])  # every round disagrees
    consensus = [event for event in events if event["stage"] == "consensus"]
    assert consensus[0] == consensus_event(1, False, ["4", "5"], False)
    predictions = [event for event in events if event["stage"] == "prediction" and event["round"] == 2]
    assert prediction_event(2, "predict_sticker", "6", False) in predictions
    assert events[-1] == direct_event("5", False)
    assert [event["stage"] for event in events].count("inverse") == 1
