"""A conversation as a local model reads it: its tokenizer's chat template (a leaf)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage

_CHAT_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def chat_prompt(tokenizer: Any, messages: list[BaseMessage]) -> str:
    """The messages as the chat template writes them, ready for the model's reply. A local
    model reads text: each message's content is its text blocks (`message.text`)."""
    chat = [{"role": _chat_role(message), "content": message.text} for message in messages]
    return str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))


def _chat_role(message: BaseMessage) -> str:
    if message.type not in _CHAT_ROLES:
        raise ValueError(f"messages: a local model takes system, human and AI messages, not {message.type!r}")
    return _CHAT_ROLES[message.type]
