"""`langgraph dev` in a process of its own on a free loopback port: for the tests and the
benchmarks that drive a real LangGraph server (both started the same way)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Until the server at `url` answers /ok; RuntimeError with its log if it exits or never does."""
    deadline = time.monotonic() + timeout
    while not answers(f"{url}/ok"):
        if process.poll() is not None:
            raise RuntimeError(f"langgraph dev exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"langgraph dev did not come up in {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@contextmanager
def langgraph_dev(project: Path, log: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """`langgraph dev ARGS` serving `project`'s langgraph.json, with `env` over this
    environment and `project` on PYTHONPATH, its output in `log`; yields its URL. Stopped
    by its process group at the end."""
    port = free_port()
    environment = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", **env}
    environment["PYTHONPATH"] = str(project)
    command = [str(Path(sys.executable).parent / "langgraph"), "dev", "--no-browser", "--no-reload"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--config", str(project / "langgraph.json"), *args]
    with open(log, "w") as log_file:
        # langgraph.json's paths are relative to the working folder; the server keeps
        # its in-memory state in .langgraph_api/ there (ignored by git).
        process = subprocess.Popen(
            command, cwd=project, stdout=log_file, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
