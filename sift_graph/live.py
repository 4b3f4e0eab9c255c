"""The tokens of a run's stages, as one text a reader can follow while it is written
(`sift serve`'s reasoning stream, `sift solve` on a terminal).

A run's two predictions generate at the same time, and their tokens arrive interleaved
(LangGraph's `messages` stream). One stage at a time goes out live; the tokens of
another that runs meanwhile wait, and go out whole, in order, when the live one ends.
Each stage's text opens with a line that names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage

StageKey = tuple[str, int]
"""(SIFT role, round) of a model call."""


@dataclass(frozen=True)
class StageText:
    """New text of one stage's model call (`ended`: the call's last piece)."""

    key: StageKey
    text: str
    ended: bool


def stage_text(message: BaseMessage, metadata: dict[str, Any]) -> StageText | None:
    """A `messages` stream item as stage text (None for one that is not a SIFT call's):
    its answer text, or a reasoning model's thinking, which is all reasoning here."""
    role, number = metadata.get("sift_role"), metadata.get("sift_round")
    if not isinstance(role, str) or not isinstance(number, int):
        return None
    reasoning = message.additional_kwargs.get("reasoning_content") or ""
    whole = not isinstance(message, AIMessageChunk)  # a reply served whole (a cache, a model that cannot stream)
    finished = bool(message.response_metadata.get("finish_reason"))
    ended = whole or finished or getattr(message, "chunk_position", None) == "last"
    return StageText((role, number), str(reasoning) + message.text, ended)


@dataclass
class LiveText:
    """Interleaved stage texts -> the text to send now, one stage after another."""

    live: StageKey | None = None
    _waiting: dict[StageKey, list[str]] = field(default_factory=dict)
    _ended: set[StageKey] = field(default_factory=set)
    _lines: list[str] = field(default_factory=list)

    def add(self, piece: StageText) -> str:
        if piece.key in self._ended:
            return ""
        out = ""
        if self.live is None:
            self.live = piece.key
            out += self._heading(piece.key)
        if piece.key == self.live:
            out += piece.text
        else:
            self._waiting.setdefault(piece.key, []).append(piece.text)
        if piece.ended:
            self._ended.add(piece.key)
            if piece.key == self.live:
                out += self._next_stages()
        return out

    def line(self, text: str) -> str:
        """A whole line (a stage's event) to send: at once between stages; while a stage is
        being written it waits for that stage's end, so it never lands inside its text."""
        self._lines.append(text + "\n")
        return self.flush() if self.live is None else ""

    def flush(self) -> str:
        """The lines that waited (at a stage's end, or when the run ends)."""
        out = "".join(self._lines)
        self._lines.clear()
        return out

    def _next_stages(self) -> str:
        """The live stage ended: the waiting ones go out; the first still going goes live."""
        self.live, out = None, "\n"
        for key in list(self._waiting):
            out += self._heading(key) + "".join(self._waiting.pop(key))
            if key not in self._ended:
                self.live = key
                break
            out += "\n"
        return out if self.live is not None else out + self.flush()

    @staticmethod
    def _heading(key: StageKey) -> str:
        role, number = key
        return f"[round {number}] {role}: "
