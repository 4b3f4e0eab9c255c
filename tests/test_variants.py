"""SIFT's variants as settings (`max_stage`, `fallback_answer`, `sticker_check`): what each
changes in a run, and that each is a result set of its own while the paper's method keeps
its digest."""

from __future__ import annotations

import json

import pytest

from sift_graph import SiftContext
from sift_graph.evaluation.results import EvalConfig
from sift_graph.sticker import parse_sticker, without_invented_conditions
from sift_graph.testing import QUESTION, STICKER, ScriptedChatModel, boxed, script_for

from helpers import INVENTING_STICKER, committed_paper_set, unsettled_record


def test_the_number_check_drops_exactly_the_conditions_stating_a_number_the_question_lacks():
    checked = without_invented_conditions(parse_sticker(INVENTING_STICKER), QUESTION)
    assert checked["conditions"] == ["Ann has 3 apples.", "Ann buys 2 more apples."]
    assert checked["question"] == "How many apples does Ann have in total?"
    assert checked["well_formed"] and "150" not in checked["text"]


def test_the_number_check_keeps_a_sticker_it_would_leave_empty_and_a_faithful_one():
    all_invented = parse_sticker("**Conditions:**\n1. Ann has 7 pears.\n**Question:** How many pears?")
    assert without_invented_conditions(all_invented, QUESTION) == all_invented
    faithful = parse_sticker(STICKER)
    assert without_invented_conditions(faithful, QUESTION) == faithful
    malformed = parse_sticker("**Conditions:**\n1. Ann has 7 pears.")
    assert without_invented_conditions(malformed, QUESTION) == malformed


@pytest.mark.parametrize("check", ["none", "numbers"])
def test_the_number_check_runs_after_forward_optimization_only(graph, check):
    script = {
        **script_for(["4", "5"], ["3", "5"]),
        "sticker": INVENTING_STICKER.replace("in total", "now"),
        "forward": INVENTING_STICKER,
    }
    model = ScriptedChatModel(script=script)
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model, sticker_check=check))

    first, forward = result["rounds"]
    assert "150 grams" in first["sticker"]["text"]  # the generated sticker is not checked
    assert ("150 grams" in forward["sticker"]["text"]) == (check == "none")
    predicted_from = [call.prompt for call in model.calls if call.role == "predict_sticker"][1]
    assert ("150 grams" in predicted_from) == (check == "none")


def test_the_query_sticker_fallback_answers_with_the_last_round_and_makes_no_direct_call(graph, scripted):
    model = scripted(["1", "2", "3"], ["4", "5", "6"], direct="9")
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model, fallback_answer="query_sticker"))
    assert result["answer"] == "6" and result["response"] == boxed("6")
    assert result["consensus_round"] is None
    assert "direct" not in model.call_counts() and "direct" not in result["usage"]


def test_the_query_sticker_fallback_leaves_an_agreement_as_it_was(graph, scripted):
    model = scripted(["4", "5"], ["3", "5"])
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model, fallback_answer="query_sticker"))
    assert (result["answer"], result["consensus_round"]) == ("5", 2)


@pytest.mark.parametrize(
    ("max_stage", "rounds", "calls"),
    [
        (1, 1, {"sticker": 1, "predict_sticker": 1, "predict_query_sticker": 1, "direct": 1}),
        (2, 2, {"sticker": 1, "predict_sticker": 2, "predict_query_sticker": 2, "forward": 1, "direct": 1}),
        (
            3,
            3,
            {"sticker": 1, "predict_sticker": 3, "predict_query_sticker": 3, "forward": 2, "inverse": 1, "direct": 1},
        ),
    ],
)
def test_a_stage_budget_stops_after_its_stage(graph, scripted, max_stage, rounds, calls):
    model = scripted(["1", "2", "3"], ["4", "5", "6"], direct="9")
    result = graph.invoke({"question": QUESTION}, context=SiftContext(model=model, max_stage=max_stage))
    assert len(result["rounds"]) == rounds and model.call_counts() == calls
    assert result["answer"] == "9"


def test_a_stage_budget_with_the_query_sticker_fallback_answers_with_its_last_round(graph, scripted):
    model = scripted(["1", "2", "3"], ["4", "5", "6"], direct="9")
    context = SiftContext(model=model, max_stage=1, fallback_answer="query_sticker")
    result = graph.invoke({"question": QUESTION}, context=context)
    assert result["answer"] == "4" and sum(model.call_counts().values()) == 3


@pytest.mark.parametrize("bad", [0, 4, True, "2"])
def test_a_bad_stage_budget_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="max_stage"):
        SiftContext(max_stage=bad)


def test_bad_variant_names_are_clear_errors():
    with pytest.raises(ValueError, match="fallback_answer"):
        SiftContext(fallback_answer="direct")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sticker_check"):
        SiftContext(sticker_check="facts")  # type: ignore[arg-type]


def digest(**settings) -> str:
    return EvalConfig.from_context(SiftContext(model="openai:m", **settings)).digest()


def test_each_variant_is_a_result_set_of_its_own():
    paper = digest()
    variants = {
        "max_stage=1": digest(max_stage=1),
        "max_stage=2": digest(max_stage=2),
        "fallback_answer": digest(fallback_answer="query_sticker"),
        "sticker_check": digest(sticker_check="numbers"),
    }
    assert paper not in variants.values() and len(set(variants.values())) == len(variants)
    # The default, spelled out, is the paper's method; a stage budget is the rounds it leaves.
    assert digest(max_stage=3, fallback_answer="cot", sticker_check="none") == paper
    assert digest(max_stage=1) == digest(forward_rounds=0, inverse_rounds=0)
    assert "max_stage" not in SiftContext(max_stage=2).result_settings()


def test_the_committed_result_set_keeps_its_digest():
    """The paper's method keeps the digest its committed records were made under."""
    paper = committed_paper_set()
    settings = {k: v for k, v in paper.config.items() if k not in ("prompts", "record_format")}
    config = EvalConfig.from_context(SiftContext.from_settings(settings))
    assert config.as_dict() == paper.config
    assert config.digest() == paper.digest


def test_the_variants_are_flags_of_both_commands():
    from sift_graph.cli.main import build_parser

    args = build_parser().parse_args(
        ["solve", "q", "--max-stage", "2", "--fallback-answer", "query_sticker", "--sticker-check", "numbers"]
    )
    assert (args.max_stage, args.fallback_answer, args.sticker_check) == (2, "query_sticker", "numbers")
    args = build_parser().parse_args(["eval", "--dataset", "gsm8k", "--max-stage", "1"])
    assert args.max_stage == 1


def test_variants_read_off_the_records_answer_as_such_a_run_would():
    from sift_graph.answers import answers_agree
    from sift_graph.evaluation.variants import variant_rows

    records = [unsettled_record("a", ["5", "6", "7"]), unsettled_record("b", ["9", "5", "9"])]
    rows = {row["variant"]: row for row in variant_rows(records, answers_agree)}
    paper = rows["the paper's method (3 stages, CoT fallback)"]
    assert (paper["correct"], paper["tokens_per_question"], paper["calls_per_question"]) == (0, 200, 10)
    budget_1 = rows["stage budget 1, query+sticker fallback"]
    assert (budget_1["correct"], budget_1["tokens_per_question"], budget_1["flags"]) == (
        1,
        60,
        "--max-stage 1 --fallback-answer query_sticker",
    )
    assert budget_1["vs_paper"] == {"this_only": 1, "reference_only": 0, "p_value": 1.0}
    assert rows["stage budget 2, query+sticker fallback"]["correct"] == 1  # b's round 2
    assert rows["3 stages, query+sticker fallback"]["correct"] == 0
    assert rows["stage budget 1, CoT fallback"]["tokens_per_question"] == 80


def test_a_set_run_with_variant_settings_answers_only_the_variants_its_records_hold():
    """Read off a set of other settings, the rows are named with them, tested against the
    set's own run, and flagged with what to add to its command; a stage budget's set has
    no later stage to read off, and only the paper's method gets the number-check row."""
    from sift_graph.answers import answers_agree
    from sift_graph.evaluation.tables import OWN_RUN_HEADER, variants_markdown
    from sift_graph.evaluation.variants import variant_rows

    records = [unsettled_record("a", ["5", "6", "7"]), unsettled_record("b", ["9", "5", "9"])]
    rows = variant_rows(records, answers_agree, [], {"fallback_answer": "query_sticker", "sticker_check": "numbers"})
    by_name = {row["variant"]: row for row in rows}
    own = by_name["this set's run (3 stages, query+sticker fallback, number check)"]
    assert own["reference"] and own["flags"] == "" and own["correct"] == 0
    cot_fallback = by_name["3 stages, CoT fallback, number check"]
    assert (cot_fallback["flags"], cot_fallback["own_point"]) == ("--fallback-answer cot", True)
    budget_1 = by_name["stage budget 1, query+sticker fallback, number check"]
    assert (budget_1["flags"], budget_1["own_point"], budget_1["correct"]) == ("--max-stage 1", False, 1)
    assert budget_1["vs_paper"] == {"this_only": 1, "reference_only": 0, "p_value": 1.0}
    assert len(rows) == 1 + 6 and "number check" not in rows[0]["variant"]  # CoT, the run, 5 variants
    assert OWN_RUN_HEADER in variants_markdown(rows)

    budget_2 = [row["variant"] for row in variant_rows(records, answers_agree, [], {"inverse_rounds": 0})]
    assert budget_2 == [
        "CoT",
        "this set's run (2 stages, CoT fallback)",
        "stage budget 1, CoT fallback",
        "2 stages, query+sticker fallback",
        "stage budget 1, query+sticker fallback",
    ]


def test_variants_of_the_committed_run_agree_with_its_lone_predictions():
    """On the committed records: the query+sticker fallback after one stage is round 1's
    P_QS alone, and after three it trades the CoT fallback's right answers for the last
    P_QS's where no round agreed (the counts the report's diagnostics give)."""
    from sift_graph.evaluation.sets import summarize_sets

    (summary,) = summarize_sets([committed_paper_set()])
    rows = {row["variant"]: row for row in summary["variants"]}
    lone = summary["diagnostics"]["lone_predictions"]
    assert rows["stage budget 1, query+sticker fallback"]["correct"] == lone["query_sticker"]
    paper = rows["the paper's method (3 stages, CoT fallback)"]["correct"]
    assert paper == summary["columns"]["stage3"]["correct"]
    expected = paper - lone["unsettled_cot"] + lone["unsettled_last_query_sticker"]
    assert rows["3 stages, query+sticker fallback"]["correct"] == expected
    assert rows["stage budget 1, query+sticker fallback"]["calls_per_question"] == 3


def test_sift_solve_says_which_fallback_answered(tmp_path, capsys):
    from sift_graph import cli

    script = tmp_path / "script.json"
    script.write_text(json.dumps({"script": script_for(["1", "2", "3"], ["4", "5", "6"], direct="9")}))
    argv = ["solve", QUESTION, "--model", f"scripted:{script}", "--checkpoints", "memory"]
    assert cli.main([*argv, "--fallback-answer", "query_sticker"]) == 0
    assert "answer: 6  (fallback: the last round's query + sticker prediction)" in capsys.readouterr().out
    assert cli.main(argv) == 0
    assert "answer: 9  (fallback: direct chain of thought)" in capsys.readouterr().out


def test_a_query_sticker_fallback_set_is_summarized_with_its_own_fallback():
    from sift_graph.evaluation.summary import summarize

    record = unsettled_record("a", ["1", "5", "7"])
    record["sift"] = {"answer": "7", "correct": False, "exit_stage": None, "consensus_round": None}
    columns = summarize([record], fallback="query_sticker")["columns"]
    assert [columns[column]["correct"] for column in ("cot", "stage1", "stage2", "stage3")] == [0, 0, 1, 0]
    assert columns["stage3"]["tokens_per_question"] == 180  # no CoT call counted: none answered


def test_the_plot_draws_the_variants_off_the_stage_line_as_labelled_points():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sift_graph.evaluation.plot import draw_points

    ready = {"label": "3 stages, QS fallback", "accuracy": 0.6, "ci95": [0.5, 0.7], "tokens_per_question": 3413.0}
    waiting = {"label": "3 stages, number check", "rerun": {"needed": ["5"], "missing": ["5"]}}
    figure, axes = plt.subplots()
    draw_points(axes, [ready, waiting], marker="^")
    (points,) = axes.collections
    assert points.get_offsets().tolist() == [[3413.0, 60.0]]  # the one still waiting for its rerun is left out
    assert [text.get_text() for text in axes.texts] == ["3 stages, QS fallback"]
    plt.close(figure)
