"""The local engine on a GPU: a tiny random Llama built on the spot (GPU machines take no
model files), loaded with `device_map="auto"`, its concurrent calls generated together.

Skipped where CUDA is not available; run it on a GPU machine with
`python -m pytest tests/test_local_gpu.py`."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch
from langchain_core.messages import HumanMessage

from sift_graph import SiftContext, build_sift_graph
from sift_graph.testing import QUESTION
from sift_graph.testing.tiny_llama import load_tiny_llama

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

PROMPTS = [f"Question {i}: Janet has {i} ducks." + " How many eggs?" * i for i in range(16)]


def asked(prompt: str) -> list[HumanMessage]:
    return [HumanMessage(prompt)]


@pytest.fixture(scope="module", params=["float32", "auto"])
def tiny_on_gpu(request, tmp_path_factory):
    return load_tiny_llama(tmp_path_factory.mktemp("tiny"), dtype=request.param)


def test_the_model_sits_on_the_gpu_in_the_dtype_asked(request, tiny_on_gpu):
    hf_model = tiny_on_gpu.hf_model
    assert hf_model.device.type == "cuda"
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    asked_fp32 = request.node.callspec.params["tiny_on_gpu"] == "float32"
    assert hf_model.dtype == (torch.float32 if asked_fp32 or not bf16 else torch.bfloat16)


async def test_batched_greedy_calls_equal_the_same_calls_alone_on_the_gpu(tiny_on_gpu):
    alone = [tiny_on_gpu.invoke(asked(prompt), max_tokens=40) for prompt in PROMPTS]
    since = time.monotonic()
    together = await asyncio.gather(*(tiny_on_gpu.ainvoke(asked(prompt), max_tokens=40) for prompt in PROMPTS))
    assert max(rows for _, rows in tiny_on_gpu.scheduler.batch_sizes(since)) > 1
    same = [a.content == b.content for a, b in zip(alone, together, strict=True)]
    if tiny_on_gpu.hf_model.dtype == torch.float32:
        assert all(same)
    else:  # bf16 rounds differently at another batch shape: most, not all, replies match
        assert sum(same) >= len(same) // 2
    for a, b in zip(alone, together, strict=True):
        assert a.usage_metadata["input_tokens"] == b.usage_metadata["input_tokens"]


def test_a_sift_run_on_the_gpu(tiny_on_gpu):
    result = (
        build_sift_graph()
        .compile()
        .invoke({"question": QUESTION}, context=SiftContext(model=tiny_on_gpu, max_tokens=16))
    )
    assert sum(usage["calls"] for usage in result["usage"].values()) >= 3
