from sift_graph.sticker import parse_sticker, render_sticker


def test_well_formed_sticker_is_parsed_and_rendered_canonically():
    raw = (
        "Sure! Here is the sticker.\n\n**Conditions:**\n1. A pen costs $2.\n2) Bo buys 3 pens.\n"
        "**Question:** How much does Bo pay?\n\nLet me know if you need more."
    )
    sticker = parse_sticker(raw)
    assert sticker["well_formed"] and sticker["problems"] == []
    assert sticker["conditions"] == ["A pen costs $2.", "Bo buys 3 pens."]
    assert sticker["question"] == "How much does Bo pay?"
    assert sticker["text"] == render_sticker(sticker["conditions"], sticker["question"])
    assert "Let me know" not in sticker["text"] and "Sure!" not in sticker["text"]


def test_headers_without_bold_and_bullets_are_accepted():
    sticker = parse_sticker("Conditions:\n- x is 2\n- y is 3\nQuestion: What is x*y?")
    assert sticker["well_formed"]
    assert sticker["conditions"] == ["x is 2", "y is 3"]


def test_text_after_a_code_fence_is_cut():
    sticker = parse_sticker("**Conditions:**\n1. a=1\n**Question:** a?\n```\n**Conditions:**\n1. junk")
    assert sticker["conditions"] == ["a=1"]


def test_missing_header_is_malformed_and_keeps_the_raw_text():
    sticker = parse_sticker("The problem says a pen costs $2.")
    assert not sticker["well_formed"]
    assert sticker["problems"] == ["no **Conditions:** header"]
    assert sticker["text"] == "The problem says a pen costs $2."


def test_missing_question_is_malformed():
    sticker = parse_sticker("**Conditions:**\n1. a=1\n2. b=2")
    assert not sticker["well_formed"]
    assert sticker["problems"] == ["no **Question:** line"]
    assert sticker["conditions"] == ["a=1", "b=2"]


def test_no_numbered_conditions_and_empty_question_are_malformed():
    sticker = parse_sticker("**Conditions:**\nnothing here\n**Question:**")
    assert not sticker["well_formed"]
    assert sticker["problems"] == ["no numbered conditions", "empty question"]


def test_empty_output_is_malformed():
    sticker = parse_sticker("")
    assert not sticker["well_formed"] and sticker["text"] == ""
