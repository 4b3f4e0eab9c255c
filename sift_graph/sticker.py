"""Sticker parsing: a model's raw output -> a `Sticker` record.

The format (stated in every sticker-producing prompt):

    **Conditions:**
    1. <one atomic fact>
    2. ...
    **Question:** <one sentence>

A well-formed sticker is re-rendered canonically (so chatter after the question is
dropped). A malformed one keeps its cleaned text, as the reference implementation did,
but is marked `well_formed=False` with the reasons, so the round record shows it.

Also the check of a sticker's facts against its question in code: which numbers a
sticker states that the question does not (`invented_numbers`, read by the eval's
diagnostics), and the sticker without such conditions (`without_invented_conditions`,
SIFT's `sticker_check="numbers"` variant).
"""

from __future__ import annotations

import re

from sift_graph.state import Sticker

_CONDITIONS_HEADER = re.compile(r"\**\s*conditions\s*\**\s*:\s*\**", re.IGNORECASE)
_QUESTION_HEADER = re.compile(r"\**\s*question\s*\**\s*:\s*\**", re.IGNORECASE)
_NUMBERED_LINE = re.compile(r"^\s*(?:\d+\s*[.)]|[-*•])\s+(?P<fact>\S.*?)\s*$")
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_LIST_MARKER = re.compile(r"^\s*\d+\s*[.)]\s", re.MULTILINE)
_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
]  # fmt: skip
_NUMBER_WORDS = {word: str(value) for value, word in enumerate(_UNITS)} | {
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
    "ninety": "90", "hundred": "100", "thousand": "1000", "dozen": "12", "twice": "2", "double": "2",
    "triple": "3", "half": "0.5", "quarter": "0.25",
}  # fmt: skip
_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def numbers_in(text: str) -> set[str]:
    """The numbers a text states, normalized ("1,200" and "1200.0" are "1200"; "three"
    is "3"), its list markers ("1. ") aside."""
    text = _LIST_MARKER.sub(" ", text)
    found = {_NUMBER_WORDS[word.lower()] for word in _WORD.findall(text)}
    for raw in _NUMBER.findall(text):
        value = raw.replace(",", "")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        found.add(value)
    return found


def conditions_of(sticker: str) -> str:
    """The conditions part of a sticker's text (the question line states no facts)."""
    return re.split(r"\*\*\s*question\s*:?\s*\*\*\s*:?", sticker, maxsplit=1, flags=re.IGNORECASE)[0]


def invented_numbers(sticker: str, question: str) -> set[str]:
    """Numbers a sticker's conditions state that the question does not: a fact made up
    (or a result computed and passed off as a fact). Small counting words aside, a
    faithful sticker restates only the question's numbers."""
    return numbers_in(conditions_of(sticker)) - numbers_in(question)


def render_sticker(conditions: list[str], question: str) -> str:
    lines = ["**Conditions:**", *(f"{number}. {fact}" for number, fact in enumerate(conditions, 1))]
    lines.append(f"**Question:** {question}")
    return "\n".join(lines)


def parse_sticker(raw: str) -> Sticker:
    """Parse a model's sticker output; never raises."""
    text = (raw or "").strip()
    header = _CONDITIONS_HEADER.search(text)
    if header is None:
        return Sticker(
            text=text,
            conditions=[],
            question="",
            well_formed=False,
            problems=["no **Conditions:** header"],
        )
    body = text[header.end() :]
    body = body.split("```", 1)[0]  # examples in prompts end at a fence; so does the sticker

    question_header = _QUESTION_HEADER.search(body)
    conditions_block = body[: question_header.start()] if question_header else body
    conditions = [
        match.group("fact") for line in conditions_block.splitlines() if (match := _NUMBERED_LINE.match(line))
    ]
    question = ""
    if question_header:
        after = body[question_header.end() :].strip()
        question = re.split(r"\n\s*\n", after, maxsplit=1)[0].strip().replace("\n", " ")

    problems = []
    if not conditions:
        problems.append("no numbered conditions")
    if question_header is None:
        problems.append("no **Question:** line")
    elif not question:
        problems.append("empty question")
    if problems:
        cleaned = (text[header.start() :].split("```", 1)[0]).strip()
        return Sticker(text=cleaned, conditions=conditions, question=question, well_formed=False, problems=problems)
    return Sticker(
        text=render_sticker(conditions, question),
        conditions=conditions,
        question=question,
        well_formed=True,
        problems=[],
    )


def without_invented_conditions(sticker: Sticker, question: str) -> Sticker:
    """The sticker without the conditions that state a number the question does not
    (`invented_numbers`): a check in code, no model call. A malformed sticker (its text
    is not built from its conditions) and one that would be left without any condition
    are kept as they are."""
    if not sticker["well_formed"]:
        return sticker
    kept = [fact for fact in sticker["conditions"] if not invented_numbers(fact, question)]
    if not kept or len(kept) == len(sticker["conditions"]):
        return sticker
    return Sticker(
        text=render_sticker(kept, sticker["question"]),
        conditions=kept,
        question=sticker["question"],
        well_formed=True,
        problems=[],
    )
