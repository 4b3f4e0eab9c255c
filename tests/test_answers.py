import pytest

from sift_graph.answers import answers_agree, extract_answer, extract_boxed, normalize_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the total is \\boxed{18}.", "18"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left\\{ 1, \\frac{a}{\\sqrt{b}} \\right\\}}", "\\left\\{ 1, \\frac{a}{\\sqrt{b}} \\right\\}"),
        ("$\\fbox{7}$", "7"),
        ("\\boxed 42", "42"),
        ("The answer is 12.", "12"),
        ("Therefore, the final answer is: $\\$3.50$.", "\\$3.50"),
        ("work...\n#### 1,000", "1,000"),
        ("cut off \\boxed{12", None),
        ("no answer stated, only 3 and 4 appear", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_boxed_takes_the_last_box_with_nesting():
    assert extract_boxed("\\boxed{a} and \\boxed{{b}+{c}}") == "{b}+{c}"


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("25", "025"),
        ("3.50", "3.5"),
        ("0.5", "\\frac12"),
        ("0.5", "\\frac{1}{2}"),
        ("1,000", "1000"),
        ("18", "\\$18"),
        ("18 dollars", "18"),
        ("18", "\\text{18 dollars}"),
        ("10", "10.0"),
        ("\\frac{\\pi}{2}", "\\pi/2"),
        ("x=2", "2"),
        ("90^\\circ", "90"),
        ("\\{1,2\\}", "\\{2,1\\}"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
    ],
)
def test_equivalent_answers_agree_both_ways(left, right):
    assert answers_agree(left, right)
    assert answers_agree(right, left)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("3", "4"),
        ("0.5", "0.05"),
        ("1,000", "100"),
        ("\\frac{1}{2}", "\\frac{1}{3}"),
        ("x+1", "x-1"),
        ("12", "-12"),
    ],
)
def test_different_answers_disagree_both_ways(left, right):
    assert not answers_agree(left, right)
    assert not answers_agree(right, left)


@pytest.mark.parametrize(("left", "right"), [(None, None), (None, "3"), ("3", None), ("", ""), ("  ", "3")])
def test_missing_answers_never_agree(left, right):
    assert not answers_agree(left, right)
    assert not answers_agree(left, right, comparator="string")


def test_string_comparator_is_the_reference_one():
    assert answers_agree("3.5", "3.5 ", comparator="string")
    assert answers_agree("$18$", "18", comparator="string")
    assert not answers_agree("3.50", "3.5", comparator="string")
    assert not answers_agree("0.5", "\\frac12", comparator="string")


def test_overlong_answers_are_compared_as_text_only():
    prose = "a very long rambling answer " * 10
    assert answers_agree(prose, prose)
    assert not answers_agree(prose, prose + "x")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\\$1,234", "1234"),
        ("\\text{5 cm}", "5"),
        ("12.", "12"),
        ("45^{\\circ}", "45"),
        ("\\left(1,2\\right)", "(1,2)"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected
