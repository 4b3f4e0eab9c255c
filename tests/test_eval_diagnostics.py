"""How the runs went, read off stored records: invented numbers, unchanged and malformed
stickers, cut-off predictions, where SIFT and CoT each win."""

from __future__ import annotations

from sift_graph.answers import answers_agree
from sift_graph.evaluation.diagnostics import (
    diagnose,
    invented_numbers,
    lone_predictions,
    numbers_in,
    outcomes,
    prediction_diagnostics,
    sticker_diagnostics,
)
from sift_graph.evaluation.report import diagnostics_markdown

QUESTION = "Janet's ducks lay 16 eggs a day. She eats three and sells the rest at $2 each. How much does she make?"
STICKER = (
    "**Conditions:**\n1. The ducks lay 16 eggs a day.\n2. Janet eats 3 eggs.\n3. An egg sells for $2.\n"
    "**Question:** How much does she make?"
)
INVENTED = (
    "**Conditions:**\n1. The ducks lay 16 eggs a day.\n2. Janet sells 13 eggs.\n**Question:** How much for 26 dollars?"
)


def round_(
    number,
    kind,
    sticker,
    *,
    answers=("4", "5"),
    agreed=False,
    problems=(),
    draft=None,
    truncated=(False, False),
    repeated=(False, False),
):
    return {
        "round": number,
        "kind": kind,
        "answers": list(answers),
        "agreed": agreed,
        "sticker": sticker,
        "sticker_problems": list(problems),
        "draft": draft,
        "draft_problems": [],
        "truncated": list(truncated),
        "cached": list(repeated),
        "repeated": list(repeated),
        "solutions": ["", ""],
    }


def record(id_, rounds, *, sift_right, cot_right, consensus_round=None, gold="26"):
    return {
        "id": id_,
        "status": "ok",
        "question": QUESTION,
        "gold": gold,
        "rounds": rounds,
        "sift": {"correct": sift_right, "consensus_round": consensus_round},
        "cot": {"correct": cot_right, "truncated": False},
    }


def test_numbers_are_read_as_a_person_reads_them():
    assert numbers_in("1. She has 1,200.50 dollars and three cats.\n2. Twice a day.") == {"1200.5", "3", "2"}
    assert numbers_in("It costs 4.00") == {"4"}


def test_a_sticker_states_only_the_questions_numbers_unless_it_invents_one():
    assert invented_numbers(STICKER, QUESTION) == set()
    # 13 is a computed result passed off as a fact; the question line's 26 is not a condition
    assert invented_numbers(INVENTED, QUESTION) == {"13"}


def test_stickers_are_counted_per_round_kind():
    records = [
        record(
            "a",
            [
                round_(1, "sticker", STICKER),
                round_(2, "forward", STICKER, repeated=(True, True)),
                round_(3, "inverse", INVENTED, draft=INVENTED),
            ],
            sift_right=False,
            cot_right=True,
        ),
        record(
            "b",
            [round_(1, "sticker", INVENTED, problems=["no **Question:** line"])],
            sift_right=True,
            cot_right=False,
            consensus_round=1,
        ),
    ]
    stickers = sticker_diagnostics(records)
    assert stickers["sticker"] == {"rounds": 2, "malformed": 1, "invented_numbers": 1}
    assert stickers["forward"] == {"rounds": 1, "malformed": 0, "invented_numbers": 0, "unchanged": 1}
    assert stickers["inverse"]["draft_invented_numbers"] == 1 and stickers["inverse"]["unchanged"] == 0
    assert prediction_diagnostics(records)["repeated"] == 2
    assert outcomes(records) == {"sift_only": ["b"], "cot_only": ["a"], "both": [], "neither": []}


def test_predictions_cut_off_and_agreement_on_a_wrong_answer_are_counted():
    wrong = record(
        "c",
        [round_(1, "sticker", STICKER, answers=("7", "7"), agreed=True, truncated=(True, False))],
        sift_right=False,
        cot_right=False,
        consensus_round=1,
    )
    counts = prediction_diagnostics([wrong])
    assert counts["predictions"] == 2 and counts["truncated"] == 1 and counts["agreed_on_a_wrong_answer"] == 1


def test_the_report_shows_how_the_runs_went():
    records = [
        record("a", [round_(1, "sticker", STICKER), round_(2, "forward", STICKER)], sift_right=True, cot_right=False)
    ]
    text = diagnostics_markdown({"diagnostics": diagnose(records)})
    assert "| forward-optimized (stage 2) | 1 | 0 | 1 | 0 | - | - |" in text
    assert "Right by SIFT only: a. Right by CoT only: none." in text
    assert diagnostics_markdown({"diagnostics": diagnose([])}) == ""


def test_each_prediction_is_graded_alone_beside_cot():
    unsettled = record(
        "a",
        [round_(1, "sticker", STICKER, answers=("26", "13")), round_(2, "forward", STICKER, answers=("13", "26.0"))],
        sift_right=False,
        cot_right=False,
    )
    settled = record(
        "b",
        [round_(1, "sticker", STICKER, answers=("26", "$26"), agreed=True)],
        sift_right=True,
        cot_right=True,
        consensus_round=1,
    )
    counts = lone_predictions([unsettled, settled], answers_agree)
    # Round 1: P_S right on both, P_QS on b only; CoT on b only. The unsettled question's
    # last-round P_QS (26.0) is right where its CoT fallback was not.
    assert counts == {
        "questions": 2,
        "sticker_only": 2,
        "query_sticker": 1,
        "cot": 1,
        "unsettled": 1,
        "unsettled_last_query_sticker": 1,
        "unsettled_cot": 0,
    }
    # The comparator is the caller's: graded as strings, "26.0" is not "26".
    exact = lambda gold, answer: gold == answer  # noqa: E731
    assert lone_predictions([unsettled], exact)["unsettled_last_query_sticker"] == 0
    text = diagnostics_markdown(
        {
            "diagnostics": diagnose([unsettled, settled]),
            "exits": {"1": {"questions": 1, "right": 1}, "fallback": {"questions": 1, "right": 0}},
        }
    )
    assert "SIFT's answer right, by where it stopped: stage 1 1 of 1, fallback 0 of 1." in text
    assert "round 1: sticker only 2 of 2 right, query + sticker 1 (CoT 1)." in text
    assert "Where no round agreed (1): the last round's query + sticker 1, the CoT fallback 0." in text
