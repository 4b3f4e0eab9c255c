"""`sift serve` for real: the command in its own process (scripted model), and the
server over a real OpenAI-compatible server (llama.cpp's, with the embedded model)."""

from __future__ import annotations

import json

import openai
import pytest
from langchain_openai import ChatOpenAI

from sift_graph import SiftContext
from sift_graph.serve import ServeSettings, SiftService, create_app
from sift_graph.testing import QUESTION, boxed, script_for

from helpers import STAGE_TEXT, serving, sift_serve, wait_until

pytestmark = pytest.mark.slow  # real processes, a real model
SECRET = "sk-test-0e7f3a9c1e5b2d4f6a8c"


def test_the_command_serves_until_interrupted(tmp_path):
    spec = tmp_path / "model.json"
    spec.write_text(json.dumps({"script": script_for(["4", "5"], ["3", "5"]), "latency": 0.05}), encoding="utf-8")
    log = tmp_path / "serve.log"
    args = ["--model", f"scripted:{spec}", "--checkpoints", str(tmp_path / "runs.sqlite"), "--max-concurrency", "3"]
    with sift_serve(*args, log=log, env={"OPENAI_API_KEY": SECRET}) as (url, process):
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="sift", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        chunks = [chunk for chunk in stream if chunk.choices]
        reasoning = [chunk.choices[0].delta.reasoning_content for chunk in chunks if chunk.choices[0].delta.model_extra]
        stages = [text for text in reasoning if not STAGE_TEXT.match(text)]
        assert len(stages) == 8 and chunks[-2].choices[0].delta.content == boxed("5")
    output = log.read_text()
    assert f"serving model 'sift' at {url}" in output and "at most 3 requests at once" in output
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in output
    assert process.returncode == 130 and output.rstrip().endswith("sift: interrupted")
    assert SECRET not in output


def test_over_a_real_openai_compatible_server(llama_server):
    context = SiftContext(model="openai:smollm2", base_url=llama_server, request_timeout=300)
    service = SiftService(ServeSettings(context=context, checkpoints="memory"))
    with serving(create_app(service)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
        messages = [{"role": "user", "content": "What is 12 plus 30?"}]
        completion = client.chat.completions.create(model="sift", messages=messages, max_tokens=48)
        sift = completion.sift
        calls = sum(role["calls"] for role in sift["usage"].values())
        assert calls == {1: 3, 2: 6, 3: 10, None: 11}[sift["consensus_round"]]
        assert 0 < completion.usage.completion_tokens <= 48 * calls  # the request's limit, per call

        kinds = []
        for chunk in client.chat.completions.create(
            model="sift", messages=messages, max_tokens=48, stream=True, stream_options={"include_usage": True}
        ):
            delta = chunk.choices[0].delta if chunk.choices else None
            kinds.append("usage" if delta is None else "stage" if delta.model_extra else "other")
        assert kinds.index("stage") < len(kinds) - 1 and kinds[-1] == "usage"
        assert kinds.count("stage") >= 4  # sticker, two predictions, consensus at the least

        chat = ChatOpenAI(model="sift", base_url=url, api_key="unused", max_tokens=48, timeout=600)
        assert isinstance(chat.invoke("What is 7 times 6?").content, str)
    wait_until(lambda: service.active == 0, "the runs to end")  # a run ends just after its answer is sent
