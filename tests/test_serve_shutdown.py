"""A real `sift serve` stopped with Ctrl-C while requests are open: each gets its answer
(503 `run_cancelled` with its thread id; a stream's error event, then [DONE]), and a port
already taken is one line, exit 2."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from sift_graph.testing import QUESTION

from helpers import ROOT, log_of, scripted_spec, sift_serve, wait_until

pytestmark = pytest.mark.slow  # real processes

BODY = {"model": "sift", "messages": [{"role": "user", "content": QUESTION}]}


def test_ctrl_c_answers_open_requests_that_their_runs_were_cancelled(tmp_path):
    calls = tmp_path / "calls.jsonl"
    # The stream (first) waits on its first sticker-only prediction, after its first stage
    # was sent; the plain request (second) on its query+sticker one: both mid-run.
    hold = {"predict_sticker": 1, "predict_query_sticker": 2}
    spec = scripted_spec(tmp_path, "held", hold=hold, call_log=str(calls))
    answers: dict[str, httpx.Response] = {}
    stream_lines: list[str] = []
    streaming = threading.Event()
    with sift_serve("--model", spec, "--checkpoints", str(tmp_path / "runs.sqlite"), log=tmp_path / "log") as (
        url,
        process,
    ):

        def streamed() -> None:
            with httpx.stream("POST", f"{url}/chat/completions", json={**BODY, "stream": True}, timeout=60) as response:
                answers["stream"] = response
                for line in response.iter_lines():
                    stream_lines.append(line)
                    streaming.set()

        def plain() -> None:
            answers["plain"] = httpx.post(f"{url}/chat/completions", json=BODY, timeout=60)

        clients = [threading.Thread(target=streamed), threading.Thread(target=plain)]
        clients[0].start()
        assert streaming.wait(timeout=30)
        clients[1].start()
        started = {"event": "start", "role": "predict_query_sticker", "call": 2, "pid": process.pid}
        wait_until(lambda: started in log_of(calls), "the plain request's run to be held", 30)
        process.send_signal(signal.SIGINT)
        for client in clients:
            client.join(timeout=60)
        assert process.wait(timeout=30) == 130  # stopped by Ctrl-C, as every sift command
    plain_answer = answers["plain"]
    assert plain_answer.status_code == 503
    assert plain_answer.json()["error"]["code"] == "run_cancelled"
    assert plain_answer.headers["x-sift-thread-id"]
    assert answers["stream"].status_code == 200
    events = [line for line in stream_lines if line]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "run_cancelled"


def test_a_busy_port_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = scripted_spec(tmp_path, "model")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sift_graph.cli",
                "serve",
                "--model",
                spec,
                "--port",
                str(port),
                "--checkpoints",
                "memory",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("model")]
    assert errors == [f"sift: error: cannot listen on 127.0.0.1:{port}: Address already in use"], done.stderr
