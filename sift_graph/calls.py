"""One model call, the same way for every node: tag it, set its decoding, read its reply.

Every call carries the tag `sift:<role>` (`state.role_tag`) in its run config, so
tracing, accounting and the scripted test model can tell the six kinds of calls apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from sift_graph.cache import CACHE_MARK, CacheSource, attach, serving
from sift_graph.context import SiftContext
from sift_graph.models.decoding import is_sampled
from sift_graph.partials import PartialCall, call_key, partial_store, partials_file, recording
from sift_graph.state import TAG_PREFIX, Role, role_tag

__all__ = [
    "TAG_PREFIX",
    "ModelReply",
    "acall_model",
    "call_model",
    "decoding_kwargs",
    "reply_from_message",
    "role_tag",
    "split_reasoning",
]

_TRUNCATION_REASONS = {"length", "max_tokens", "MAX_TOKENS"}
_THINK_BLOCK = re.compile(r"<think>(?P<reasoning>.*?)(?:</think>|$)", re.DOTALL)


@dataclass(frozen=True)
class ModelReply:
    """What SIFT keeps of one model reply."""

    text: str
    """The final part of the reply (after any reasoning block)."""
    reasoning: str | None
    """A reasoning model's thinking, when it sent any."""
    truncated: bool
    input_tokens: int
    output_tokens: int
    cache: CacheSource | None = None
    """Where a reply served without a request came from (see `cache`), else None."""
    continued_from: int | None = None
    """Tokens of an interrupted try's partial reply this one continued (None: not continued)."""


def decoding_kwargs(model: BaseChatModel, context: SiftContext) -> dict[str, Any]:
    """Per-call decoding settings, for the model types known to accept them: OpenAI
    clients, and models that say so with `accepts_decoding_kwargs = True` (ours do).

    Other chat models are called as configured: passing unknown keyword arguments
    to an arbitrary provider can fail the call.
    """
    from langchain_openai.chat_models.base import BaseChatOpenAI

    if not isinstance(model, BaseChatOpenAI) and not getattr(model, "accepts_decoding_kwargs", False):
        return {}
    settings: dict[str, Any] = {"max_tokens": context.max_tokens, "temperature": context.temperature}
    sampled = is_sampled(context.temperature)
    if sampled and context.top_p is not None:
        settings["top_p"] = context.top_p
    if sampled and context.seed is not None:
        settings["seed"] = context.seed  # a sample's own seed: reproducible, and its own cache key
    return settings


def split_reasoning(content: str) -> tuple[str | None, str]:
    """`<think>...</think>answer` -> (reasoning, answer). An unclosed block is all reasoning."""
    match = _THINK_BLOCK.search(content)
    if match is None:
        return None, content.strip()
    reasoning = match.group("reasoning").strip()
    final = (content[: match.start()] + content[match.end() :]).strip()
    return reasoning or None, final


def reply_from_message(message: BaseMessage, partial: PartialCall | None = None) -> ModelReply:
    """Read text, reasoning, truncation and token counts off a chat model's reply."""
    if not isinstance(message, AIMessage):
        raise TypeError(f"chat model returned a {type(message).__name__}, expected an AIMessage")
    # `message.text` is LangChain's reading of the reply's text blocks; a `<think>` block
    # inside that text is reasoning all the same, which only we split off.
    inline_reasoning, text = split_reasoning(message.text)
    separate_reasoning = message.additional_kwargs.get("reasoning_content")
    reasoning = separate_reasoning or inline_reasoning
    finish_reason = message.response_metadata.get("finish_reason") or message.response_metadata.get("stop_reason")
    usage: Mapping[str, Any] = message.usage_metadata or {}
    return ModelReply(
        text=text,
        reasoning=reasoning,
        truncated=finish_reason in _TRUNCATION_REASONS,
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
        cache=message.response_metadata.get(CACHE_MARK),
        continued_from=None if partial is None else partial.continued_from,
    )


def stream_kwargs(model: BaseChatModel) -> dict[str, Any]:
    """What makes `model` generate through its streaming interface, so its tokens reach
    the callbacks (LangGraph's `messages` stream) as they come. Our models always do;
    another model is asked with LangChain's `stream=True` when it can stream at all
    (else it is invoked as it is: `stream` would reach its `_generate`)."""
    if getattr(model, "generates_by_streaming", False) or type(model)._stream is BaseChatModel._stream:
        return {}
    return {"stream": True}


def partial_call(
    model: BaseChatModel, prompt: str, decoding: dict[str, Any], context: SiftContext
) -> PartialCall | None:
    """This call's partial reply: where it is saved while it streams, and what an
    interrupted try of the same call left (None when the run keeps no partials)."""
    store = partial_store(partials_file(context.partials, context.cache))
    if store is None:
        return None
    key = call_key(model.asdict(), prompt, decoding)
    return PartialCall(key=key, store=store, continuation=context.continuation, found=store.load(key))


def _call_config(role: Role, config: RunnableConfig | None, round_number: int | None = None) -> RunnableConfig:
    """The node's config plus the call's tag, run name, role and round metadata (what
    LangGraph's `messages` stream hands out with each token).

    What `merge_configs(config, {...})` gives, without its copies of the callback
    manager and of every key (the model's `invoke` configures its own callbacks from the
    parent's anyway): this runs once per model call.
    """
    tag = role_tag(role)
    metadata: dict[str, Any] = {"sift_role": role}
    if round_number is not None:
        metadata["sift_round"] = round_number
    if not config:
        from langchain_core.runnables.config import merge_configs

        return merge_configs(config, {"tags": [tag], "run_name": f"sift_{role}", "metadata": metadata})
    tags = config.get("tags") or []
    return {
        **config,
        "tags": sorted({*tags, tag}),
        "metadata": {**(config.get("metadata") or {}), **metadata},
        "run_name": f"sift_{role}",
    }


def call_model(
    model: BaseChatModel,
    role: Role,
    prompt: str,
    context: SiftContext,
    config: RunnableConfig | None,
    cache: BaseCache | None = None,
    round_number: int | None = None,
) -> ModelReply:
    decoding = decoding_kwargs(model, context)
    partial = partial_call(model, prompt, decoding, context)
    with serving(cache), recording(partial):
        message = attach(model).invoke(
            [HumanMessage(prompt)], _call_config(role, config, round_number), **decoding, **stream_kwargs(model)
        )
    if partial is not None:
        partial.finished()
    return reply_from_message(message, partial)


async def acall_model(
    model: BaseChatModel,
    role: Role,
    prompt: str,
    context: SiftContext,
    config: RunnableConfig | None,
    cache: BaseCache | None = None,
    round_number: int | None = None,
) -> ModelReply:
    decoding = decoding_kwargs(model, context)
    partial = partial_call(model, prompt, decoding, context)
    with serving(cache), recording(partial):
        message = await attach(model).ainvoke(
            [HumanMessage(prompt)], _call_config(role, config, round_number), **decoding, **stream_kwargs(model)
        )
    if partial is not None:
        partial.finished()
    return reply_from_message(message, partial)
