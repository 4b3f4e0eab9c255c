"""Final-answer extraction and answer equivalence: small pure functions.

Extraction takes the last `\\boxed{...}` (braces nested to any depth), else an explicit
"final answer" phrase, else a GSM8K-style `#### N` line. There is deliberately no
"last number in the text" fallback: it would make two rambling, answerless predictions
look like they agree.

Equivalence is mathematical (math-verify) and symmetric: `answers_agree(a, b) ==
answers_agree(b, a)`, and a missing answer never agrees with anything.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any, Literal

# How two answers are compared: math-verify equivalence, or normalized strings.
Comparator = Literal["math", "string"]

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_PHRASE = re.compile(
    r"(?:final answer|the answer)\s*(?:is|:|=)\s*:?\s*(?P<answer>.+?)(?:\.\s|\.?$|\n)",
    re.IGNORECASE,
)
_HASH_ANSWER = re.compile(r"^\s*####\s*(?P<answer>.+?)\s*$", re.MULTILINE)
# Past this length an "answer" is prose, and symbolic parsing of it could run for long.
_MAX_MATH_ANSWER_CHARS = 120

# math-verify warns on every call made with its (signal-based) timeouts off. We must turn
# them off: nodes run in worker threads where signals are unavailable. Inputs are kept
# short instead (_MAX_MATH_ANSWER_CHARS), which is what bounds parse time.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` in `text`, braces balanced."""
    best_start = max(text.rfind(command + "{") for command in _BOX_COMMANDS)
    if best_start < 0:  # `\boxed 42`, without braces, is valid LaTeX too
        spaced = re.findall(r"\\boxed\s+([^\s$]+)", text)
        return spaced[-1] if spaced else None
    open_at = text.index("{", best_start)
    depth = 0
    for index in range(open_at, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : index].strip()
    return None  # unbalanced: the model was cut off inside the box


def extract_answer(text: str | None) -> str | None:
    """The final answer stated in a model's response, or None when it states none."""
    if not text:
        return None
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if phrases:
        answer = phrases[-1].group("answer").strip().strip("*$ ").rstrip(".")
        if answer:
            return answer
    hashes = list(_HASH_ANSWER.finditer(text))
    if hashes:
        return hashes[-1].group("answer").strip()
    return None


_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TRAILING_WORDS = re.compile(r"^(?P<number>[-+]?\$?\s*\d[\d.]*)\s*[A-Za-z][A-Za-z\s.]*$")


def normalize_answer(answer: str) -> str:
    """Strip presentation that does not change a value: `$`, thousands commas,
    `\\text{}` wrappers, trailing units ("18 dollars"), degrees, `\\left`/`\\right`."""
    value = answer.strip()
    value = value.replace("\\$", "").replace("$", "")
    value = _TEXT_WRAPPER.sub(r"\1", value)
    value = value.replace("\\left", "").replace("\\right", "")
    value = value.replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "")
    value = value.replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    value = _THOUSANDS_COMMA.sub("", value)
    if match := _TRAILING_WORDS.match(value.strip()):
        value = match.group("number")
    return value.strip().rstrip(".").strip()


def _reference_normalize(answer: str) -> str:
    """The paper's reference comparison: lower-case, no spaces, no `$`, no trailing dot."""
    return answer.strip().lower().replace(" ", "").replace("$", "").rstrip(".")


@lru_cache(maxsize=4096)
def _parse(answer: str) -> tuple[Any, ...]:
    from math_verify import parse

    return tuple(parse(f"${answer}$", parsing_timeout=None))


def _math_equal(left: str, right: str) -> bool:
    from math_verify import verify

    if max(len(left), len(right)) > _MAX_MATH_ANSWER_CHARS:
        return False
    parsed_left, parsed_right = _parse(left), _parse(right)
    if not parsed_left or not parsed_right:
        return False
    # verify(gold, target) is not symmetric; either direction holding is agreement.
    return bool(verify(list(parsed_left), list(parsed_right), timeout_seconds=None)) or bool(
        verify(list(parsed_right), list(parsed_left), timeout_seconds=None)
    )


def answers_agree(left: str | None, right: str | None, comparator: Comparator = "math") -> bool:
    """Whether two extracted answers are the same answer. Missing never agrees."""
    if left is None or right is None or not left.strip() or not right.strip():
        return False
    if comparator == "string":
        return _reference_normalize(left) == _reference_normalize(right)
    norm_left, norm_right = normalize_answer(left), normalize_answer(right)
    if not norm_left or not norm_right:
        return False
    if norm_left == norm_right:
        return True
    return _math_equal(norm_left, norm_right)
