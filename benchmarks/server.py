"""An OpenAI-compatible chat server on loopback that answers every request after
sleeping a fixed time: a model of known latency, for the latency and throughput
benchmarks.

    python -m benchmarks.server --latency-ms 200 --workload agree   # prints "PORT <n>"

It is one asyncio process with keep-alive HTTP/1.1 and no per-request work beyond a
JSON parse and dump, so hundreds of concurrent requests cost it little (the benchmark
measures it alone first: `measure_server`). The reply depends on the SIFT role, which
is recognised from the prompt: under ``agree`` both predictions answer 5, under
``cascade`` they never agree (4 vs 5) and SIFT spends its whole budget.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any

from sift_graph.prompts import role_of_prompt
from sift_graph.testing import FORWARD_STICKER, INVERSE_STICKER, STICKER, boxed


def replies(workload: str) -> dict[str, str]:
    disagree = workload == "cascade"
    return {
        "sticker": STICKER,
        "forward": FORWARD_STICKER,
        "inverse": INVERSE_STICKER,
        "predict_sticker": boxed("4") if disagree else boxed("5"),
        "predict_query_sticker": boxed("5"),
        "direct": boxed("5"),
    }


async def serve(latency: float, workload: str, port: int = 0) -> None:
    answers = replies(workload)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length)) if length else {}
                if head.startswith(b"GET"):
                    payload: dict[str, Any] = {"object": "list", "data": [{"id": "bench", "object": "model"}]}
                else:
                    prompt = body["messages"][-1]["content"]
                    content = answers[role_of_prompt(prompt)]
                    await asyncio.sleep(latency)
                    prompt_tokens, completion_tokens = len(prompt.split()), len(content.split())
                    payload = {
                        "id": "chatcmpl-bench",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "bench"),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    }
                data = json.dumps(payload).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(data)).encode()
                    + b"\r\n\r\n"
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=2048)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class SleepingServer:
    """The server in a child process (so it does not share the benchmark's GIL)."""

    def __init__(self, latency: float, workload: str = "agree") -> None:
        self.latency, self.workload = latency, workload
        self._process: subprocess.Popen | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> SleepingServer:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.server",
                "--latency-ms",
                str(self.latency * 1000),
                "--workload",
                self.workload,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self._process.stdout.readline()
        if not line.startswith("PORT "):
            self._process.kill()
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


async def measure_server(base_url: str, concurrency: int, requests_per_client: int) -> float:
    """Wall time of `concurrency` keep-alive clients each sending requests one after
    another, over the ideal (requests_per_client x latency): the server alone."""
    host, port = base_url.split("//")[1].split("/")[0].split(":")
    body = json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": "Key facts of the problem: x"}]}
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(requests_per_client):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workload", choices=("agree", "cascade"), default="agree")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.latency_ms / 1000, args.workload, args.port))


if __name__ == "__main__":
    main()
