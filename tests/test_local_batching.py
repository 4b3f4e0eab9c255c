"""Concurrent calls on one local model are generated together, and each keeps its own
settings, counts and outcome. On a tiny random Llama built on the spot (fp32 on the CPU,
seconds); tests/test_embedded_model.py checks the same on the real embedded model."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch
from langchain_core.messages import HumanMessage

from sift_graph import SiftContext, build_sift_graph
from sift_graph.models import LocalChatModel
from sift_graph.testing import QUESTION
from sift_graph.testing.tiny_llama import load_tiny_llama

LIMIT = 30
PROMPTS = [f"Question {i}: Janet has {i} ducks." + " How many eggs?" * i for i in range(8)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> LocalChatModel:
    model = load_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    assert isinstance(model, LocalChatModel)
    return model


def ask(prompt: str) -> list[HumanMessage]:
    return [HumanMessage(prompt)]


@pytest.fixture(scope="module")
def alone(tiny) -> dict[str, object]:
    """Each prompt's greedy reply, one call at a time."""
    return {prompt: tiny.invoke(ask(prompt), max_tokens=LIMIT) for prompt in PROMPTS}


def rows_per_step_since(model: LocalChatModel, since: float) -> list[int]:
    return [rows for _, rows in model.scheduler.batch_sizes(since)]


def test_alone_is_what_transformers_generate_gives(tiny, alone):
    hf_model, tokenizer = tiny.hf_model, tiny.tokenizer
    for prompt in PROMPTS[:3]:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        output = hf_model.generate(
            **encoded, max_new_tokens=LIMIT, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        new = output[0, encoded["input_ids"].shape[1] :]
        assert tokenizer.decode(new, skip_special_tokens=True) == alone[prompt].content
        assert alone[prompt].usage_metadata["output_tokens"] == len(new)


async def test_concurrent_greedy_calls_equal_the_same_calls_alone(tiny, alone):
    since = time.monotonic()
    replies = await asyncio.gather(*(tiny.ainvoke(ask(prompt), max_tokens=LIMIT) for prompt in PROMPTS))
    for prompt, reply in zip(PROMPTS, replies, strict=True):
        assert reply.content == alone[prompt].content
        assert reply.usage_metadata == alone[prompt].usage_metadata
        assert reply.response_metadata == alone[prompt].response_metadata
    assert max(rows_per_step_since(tiny, since)) > 1  # they were generated together


def test_the_replies_end_both_ways(alone):
    """The references cover a reply that ended on its own and one cut at the limit."""
    reasons = {reply.response_metadata["finish_reason"] for reply in alone.values()}
    assert reasons == {"stop", "length"}


async def test_token_counts_and_finish_reasons_are_per_request(tiny, alone):
    replies = await asyncio.gather(*(tiny.ainvoke(ask(prompt), max_tokens=LIMIT) for prompt in PROMPTS))
    for prompt, reply in zip(PROMPTS, replies, strict=True):
        text = tiny.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        usage, reason = reply.usage_metadata, reply.response_metadata["finish_reason"]
        assert usage["input_tokens"] == len(tiny.tokenizer(text, add_special_tokens=False)["input_ids"])
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert (reason == "length") == (usage["output_tokens"] == LIMIT)


def plain_word(text: str) -> str:
    """A run of three ASCII letters from past the start of `text` (a stop string that
    cannot be half a character)."""
    return next(text[i : i + 3] for i in range(4, len(text)) if text[i : i + 3].isascii() and text[i : i + 3].isalpha())


async def test_each_call_keeps_its_own_settings_in_one_batch(tiny, alone):
    long_reply = next(p for p in PROMPTS if alone[p].response_metadata["finish_reason"] == "length")
    reference = alone[long_reply].content
    stop = plain_word(reference)
    torch.manual_seed(0)
    short, nucleus_of_one, hot, stopped, full = await asyncio.gather(
        tiny.ainvoke(ask(long_reply), max_tokens=5),
        tiny.ainvoke(ask(long_reply), max_tokens=LIMIT, temperature=1.5, top_p=1e-9),
        tiny.ainvoke(ask(long_reply), max_tokens=LIMIT, temperature=1.5),
        tiny.ainvoke(ask(long_reply), max_tokens=LIMIT, stop=[stop]),
        tiny.ainvoke(ask(long_reply), max_tokens=LIMIT),
    )
    assert short.usage_metadata["output_tokens"] == 5 and short.response_metadata["finish_reason"] == "length"
    assert reference.startswith(short.content)
    assert nucleus_of_one.content == reference  # top_p keeps only the top token: greedy again
    assert hot.content != reference  # sampled, not greedy
    assert stopped.content == reference[: reference.find(stop)]
    assert stopped.response_metadata["finish_reason"] == "stop"
    assert stopped.usage_metadata["output_tokens"] < LIMIT
    assert full.content == reference


async def test_a_seeded_sample_is_the_same_alone_in_a_batch_and_again(tiny):
    """A sampled call with a `seed` draws from its own generator: the global random state
    and its neighbours in the batch change nothing; another seed, another reply."""
    prompt = PROMPTS[3]
    torch.manual_seed(1)
    alone_reply = tiny.invoke(ask(prompt), max_tokens=LIMIT, temperature=1.5, seed=7)
    torch.manual_seed(2)
    replies = await asyncio.gather(
        tiny.ainvoke(ask(PROMPTS[5]), max_tokens=LIMIT, temperature=1.5),
        tiny.ainvoke(ask(prompt), max_tokens=LIMIT, temperature=1.5, seed=7),
        tiny.ainvoke(ask(prompt), max_tokens=LIMIT, temperature=1.5, seed=8),
        tiny.ainvoke(ask(PROMPTS[6]), max_tokens=LIMIT),
    )
    assert replies[1].content == alone_reply.content
    assert replies[2].content != alone_reply.content


@pytest.fixture(scope="module")
def chatty(tmp_path_factory) -> LocalChatModel:
    """A tiny Llama whose replies run to their token limit."""
    model = load_tiny_llama(tmp_path_factory.mktemp("chatty-llama"), end_of_turn_scale=1.0)
    assert isinstance(model, LocalChatModel)
    return model


async def test_a_cancelled_request_frees_its_row_and_the_others_go_on(chatty):
    long, prompt = 300, PROMPTS[1]
    reference = chatty.invoke(ask(prompt), max_tokens=long)
    assert reference.response_metadata["finish_reason"] == "length"
    started = len(chatty.scheduler.batch_sizes())
    kept = asyncio.create_task(chatty.ainvoke(ask(prompt), max_tokens=long))
    cancelled = asyncio.create_task(chatty.ainvoke(ask(PROMPTS[2]), max_tokens=long))
    while len(chatty.scheduler.batch_sizes()) < started + 20:  # both are mid-generation
        await asyncio.sleep(0.001)
    assert 2 in rows_per_step_since(chatty, 0)
    cancelled.cancel()
    cancelled_at = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    reply = await kept
    assert reply.content == reference.content and reply.usage_metadata["output_tokens"] == long
    assert rows_per_step_since(chatty, cancelled_at)[-1] == 1  # the cancelled row left the batch


@pytest.mark.parametrize("group_size", [1, 8])
async def test_a_failing_request_fails_alone_mid_batch(tiny, alone, group_size):
    """Prompts are prefilled one by one on a CPU (`group_size` 1) and in groups on a GPU,
    where a failed group prefill is retried one prompt at a time."""
    tiny.scheduler.prefill_group_size = group_size
    too_long = "eggs " * 5000  # past the tiny model's context of 4096 tokens
    try:
        first = [asyncio.create_task(tiny.ainvoke(ask(prompt), max_tokens=LIMIT)) for prompt in PROMPTS[:2]]
        started = len(tiny.scheduler.batch_sizes())
        while len(tiny.scheduler.batch_sizes()) < started + 2:
            await asyncio.sleep(0.001)
        # Submitted while a step runs, the three usually join in one group.
        later = await asyncio.gather(
            tiny.ainvoke(ask(too_long), max_tokens=LIMIT),
            tiny.ainvoke(ask(PROMPTS[2]), max_tokens=LIMIT),
            tiny.ainvoke(ask(PROMPTS[3]), max_tokens=LIMIT),
            return_exceptions=True,
        )
    finally:
        tiny.scheduler.prefill_group_size = 1
    assert isinstance(later[0], ValueError) and "do not fit the model's context of 4096" in str(later[0])
    assert [reply.content for reply in [*(await asyncio.gather(*first)), *later[1:]]] == [
        alone[prompt].content for prompt in PROMPTS[:4]
    ]


def test_sync_and_async_calls_generate_together(tiny, alone):
    since = time.monotonic()
    sync_replies: dict[str, object] = {}

    def call(prompt: str) -> None:
        sync_replies[prompt] = tiny.invoke(ask(prompt), max_tokens=LIMIT)

    async def async_calls() -> list[object]:
        return await asyncio.gather(*(tiny.ainvoke(ask(prompt), max_tokens=LIMIT) for prompt in PROMPTS[4:]))

    threads = [threading.Thread(target=call, args=(prompt,)) for prompt in PROMPTS[:4]]
    for thread in threads:
        thread.start()
    async_replies = asyncio.run(async_calls())
    for thread in threads:
        thread.join()
    assert [sync_replies[prompt].content for prompt in PROMPTS[:4]] == [alone[p].content for p in PROMPTS[:4]]
    assert [reply.content for reply in async_replies] == [alone[p].content for p in PROMPTS[4:]]
    assert max(rows_per_step_since(tiny, since)) > 4  # threads and tasks shared steps


def test_a_sync_run_generates_its_two_predictions_together(tiny):
    since = time.monotonic()
    result = build_sift_graph().compile().invoke({"question": QUESTION}, context=SiftContext(model=tiny, max_tokens=8))
    assert result["usage"]["predict_sticker"]["calls"] >= 1
    assert 2 in rows_per_step_since(tiny, since)
