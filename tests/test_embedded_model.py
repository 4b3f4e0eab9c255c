"""Integration: the embedded SmolLM2-135M-Instruct, for real (no scripted model).

The model is too small to be right about math; these tests check structure, accounting
and plumbing, never correctness.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from langchain_core.messages import HumanMessage

from sift_graph import SiftContext, build_sift_graph, prompts
from sift_graph.models import LoadOptions, LocalChatModel, converted_gguf_folder, default_model_path, resolve_model
from sift_graph.models.devices import cpu_has_native_bf16
from sift_graph.state import ROLES

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parent / "data"
# The stage-1 exit needs 3 calls, stage 2 needs 6, stage 3 needs 10, the fallback 11.
CALLS_BY_CONSENSUS_ROUND = {1: 3, 2: 6, 3: 10, None: 11}


@pytest.fixture(scope="session")
def embedded():
    return resolve_model("default")


@pytest.fixture(scope="session")
def gsm8k_question() -> str:
    return json.loads((DATA / "gsm8k_sample.jsonl").read_text().splitlines()[0])["question"]


def test_the_default_spec_is_a_cached_local_transformers_model(embedded):
    assert isinstance(embedded, LocalChatModel)
    assert resolve_model(None) is embedded and resolve_model("default") is embedded
    converted = converted_gguf_folder(default_model_path())
    stamp = (converted / "config.json").stat().st_mtime_ns
    assert converted_gguf_folder(default_model_path()) == converted  # reused, not redone
    assert (converted / "config.json").stat().st_mtime_ns == stamp
    assert (converted / "model.safetensors").exists()


def test_the_cache_key_names_the_local_model(embedded):
    """LangChain keys its chat-model cache by this string: another local model, or this
    one at another precision, must never be handed this one's replies."""
    key = embedded._get_llm_string(max_tokens=5)
    assert embedded.model_id in key and str(embedded.hf_model.dtype) in key


def test_the_default_dtype_is_the_fastest_this_cpu_has(embedded):
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert embedded.hf_model.dtype == expected
    fp32 = resolve_model("default", options=LoadOptions(dtype="float32"))
    assert fp32 is not embedded and fp32.hf_model.dtype == torch.float32


async def test_batched_greedy_calls_equal_the_same_calls_alone_in_fp32(gsm8k_question):
    """Padding, rows joining mid-flight and reused prompt prefixes change no greedy token
    in fp32. (In bf16 they can: see docs/models.md, "Batched vs alone".)"""
    fp32 = resolve_model("default", options=LoadOptions(dtype="float32"))
    sticker = "**Conditions:**\n1. Janet's ducks lay 16 eggs per day.\n**Question:** How many eggs are left?"
    asked = [
        prompts.sticker_prompt(gsm8k_question),
        prompts.predict_sticker_prompt(sticker),
        prompts.predict_query_sticker_prompt(gsm8k_question, sticker),
        prompts.forward_prompt(gsm8k_question, sticker),
        prompts.direct_prompt(gsm8k_question),
        prompts.direct_prompt("What is 12 times 7?"),
    ]
    alone = [fp32.invoke([HumanMessage(prompt)], max_tokens=24) for prompt in asked]
    together = await asyncio.gather(*(fp32.ainvoke([HumanMessage(prompt)], max_tokens=24) for prompt in asked))
    assert [reply.content for reply in together] == [reply.content for reply in alone]
    assert [reply.usage_metadata for reply in together] == [reply.usage_metadata for reply in alone]


def test_local_model_reports_usage_and_truncation(embedded):
    reply = embedded.invoke([HumanMessage("Count from one to twenty in words.")], max_tokens=5, temperature=0.0)
    assert reply.usage_metadata["output_tokens"] == 5
    assert reply.usage_metadata["input_tokens"] > 10
    assert reply.response_metadata["finish_reason"] == "length"
    assert reply.content.strip()


async def test_local_model_has_an_async_path(embedded):
    reply = await embedded.ainvoke([HumanMessage("Say hi.")], max_tokens=4)
    assert reply.usage_metadata["output_tokens"] <= 4


def test_greedy_decoding_is_deterministic(embedded):
    prompt = [HumanMessage("What is 2 + 3?")]
    first = embedded.invoke(prompt, max_tokens=12, temperature=0.0)
    second = embedded.invoke(prompt, max_tokens=12, temperature=0.0)
    assert first.content == second.content


def test_a_real_sift_run_on_a_gsm8k_question(embedded, gsm8k_question):
    graph = build_sift_graph().compile()
    context = SiftContext(model="default", max_tokens=48)
    since = time.monotonic()
    events = []
    result = None
    for mode, chunk in graph.stream({"question": gsm8k_question}, context=context, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            result = chunk

    rounds = result["rounds"]
    assert 1 <= len(rounds) <= 3
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    assert [r["kind"] for r in rounds] == ["sticker", "forward", "inverse"][: len(rounds)]
    # A call made again in the run (an unchanged sticker) is served free: made + reused.
    calls = {role: usage["calls"] + usage.get("reused_calls", 0) for role, usage in result["usage"].items()}
    assert set(calls) <= set(ROLES)
    assert sum(calls.values()) == CALLS_BY_CONSENSUS_ROUND[result["consensus_round"]]
    assert calls["predict_sticker"] == calls["predict_query_sticker"] == len(rounds)
    for usage in result["usage"].values():
        assert usage["calls"] == 0 or (usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 48 * usage["calls"])
    for record in rounds:
        for key in ("predict_sticker", "predict_query_sticker"):
            assert isinstance(record[key]["text"], str)
            assert isinstance(record[key]["truncated"], bool)
        assert isinstance(record["sticker"]["well_formed"], bool)
    if result["consensus_round"] is None:
        assert result["response"] and "direct" in calls
    else:
        assert result["response"] == rounds[-1]["predict_query_sticker"]["text"]
    assert [e["stage"] for e in events].count("consensus") == len(rounds)
    assert events[0]["stage"] == "sticker"
    # The sync path (the CLI's) generates a round's two predictions together.
    assert 2 in [rows for _, rows in embedded.scheduler.batch_sizes(since)]


def test_the_cli_prints_a_real_run(gsm8k_question, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SIFT_CHECKPOINTS": str(tmp_path / "runs.sqlite")}
    proc = subprocess.run(
        [sys.executable, "-m", "sift_graph.cli", "solve", gsm8k_question, "--json", "--max-tokens", "32"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"thread_id", "answer", "response", "consensus_round", "sticker", "rounds", "usage"}
    progress = proc.stderr.splitlines()
    assert progress[0] == f"thread: {result['thread_id']}"
    assert progress[1] == "model: default (loading...)"
    assert "[round 1] sticker (generated)" in proc.stderr
    assert any(line.startswith("[round 1] answer from sticker: ") for line in progress)
    assert any(line.startswith("[round 1] answer from query+sticker: ") for line in progress)
    assert any(line.startswith("[round 1] ") and "consensus: " in line for line in progress)
    assert any(line.startswith("answer: ") for line in progress)
    calls = sum(u["calls"] for u in result["usage"].values())
    assert f"calls: {calls}  tokens: " in proc.stderr
