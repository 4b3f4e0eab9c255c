"""How interleaved stage texts and stage events become one readable text (`live.LiveText`):
`sift serve`'s reasoning stream and `sift solve` on a terminal."""

from __future__ import annotations

from langchain_core.messages import AIMessage, AIMessageChunk

from sift_graph.live import LiveText, StageText, stage_text

STICKER_ONLY, QUERY_STICKER = ("predict_sticker", 1), ("predict_query_sticker", 1)


def test_a_stage_that_runs_meanwhile_waits_and_goes_out_whole_when_the_live_one_ends():
    text = LiveText()
    out = text.add(StageText(STICKER_ONLY, "Adding ", ended=False))
    out += text.add(StageText(QUERY_STICKER, "Three plus two ", ended=False))
    out += text.add(StageText(STICKER_ONLY, "gives 5", ended=True))
    out += text.add(StageText(QUERY_STICKER, "is 5", ended=True))
    assert out == "[round 1] predict_sticker: Adding gives 5\n[round 1] predict_query_sticker: Three plus two is 5\n"


def test_an_event_line_never_lands_inside_the_text_of_the_stage_being_written():
    text = LiveText()
    out = text.add(StageText(STICKER_ONLY, "Adding ", ended=False))
    out += text.add(StageText(QUERY_STICKER, "Three plus two is 5", ended=True))
    out += text.line("[round 1] answer from query+sticker: 5")  # that stage is done: its event comes
    assert out == "[round 1] predict_sticker: Adding "  # ... but waits while the other is written
    out += text.add(StageText(STICKER_ONLY, "gives 5", ended=True))
    assert out == (
        "[round 1] predict_sticker: Adding gives 5\n"
        "[round 1] predict_query_sticker: Three plus two is 5\n"
        "[round 1] answer from query+sticker: 5\n"
    )
    assert text.line("[round 1] consensus: 5 vs 5") == "[round 1] consensus: 5 vs 5\n"  # between stages: at once


def test_lines_still_waiting_when_the_run_ends_are_flushed():
    text = LiveText()
    text.add(StageText(STICKER_ONLY, "cut off", ended=False))
    assert text.line("[round 1] answer from sticker: (none)") == ""
    assert text.flush() == "[round 1] answer from sticker: (none)\n" and text.flush() == ""


def test_a_stage_text_is_the_thinking_then_the_text_blocks_of_a_sift_call():
    chunk = AIMessageChunk(
        content=[{"type": "text", "text": "so "}, {"type": "image_url", "image_url": {"url": "x"}}, "5"],
        additional_kwargs={"reasoning_content": "3+2 "},
    )
    sift_call = {"sift_role": "predict_sticker", "sift_round": 1}
    assert stage_text(chunk, sift_call) == StageText(STICKER_ONLY, "3+2 so 5", ended=False)
    assert stage_text(AIMessage("5"), sift_call) == StageText(STICKER_ONLY, "5", ended=True)  # a reply served whole
    assert stage_text(chunk, {"langgraph_node": "chat"}) is None  # not a SIFT call's tokens
