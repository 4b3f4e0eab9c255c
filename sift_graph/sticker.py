"""Sticker parsing: a model's raw output -> a `Sticker` record.

The format (stated in every sticker-producing prompt):

    **Conditions:**
    1. <one atomic fact>
    2. ...
    **Question:** <one sentence>

A well-formed sticker is re-rendered canonically (so chatter after the question is
dropped). A malformed one keeps its cleaned text, as the reference implementation did,
but is marked `well_formed=False` with the reasons, so the round record shows it.
"""

from __future__ import annotations

import re

from sift_graph.state import Sticker

_CONDITIONS_HEADER = re.compile(r"\**\s*conditions\s*\**\s*:\s*\**", re.IGNORECASE)
_QUESTION_HEADER = re.compile(r"\**\s*question\s*\**\s*:\s*\**", re.IGNORECASE)
_NUMBERED_LINE = re.compile(r"^\s*(?:\d+\s*[.)]|[-*•])\s+(?P<fact>\S.*?)\s*$")


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
