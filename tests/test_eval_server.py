"""`sift eval --server URL` against a real `langgraph dev --n-jobs-per-worker 8` on loopback:
the deployment's model is the scripted fake (SIFT_MODEL in the server's environment; one
reply per role, so concurrent runs get the same replies whatever their order), or a real
OpenAI-compatible server (tests/fault_server.py). The table equals a local eval's; a
killed eval, rerun, counts every question once and starts no run twice (counted through
the SDK); a server that cannot run the eval is one line and exit 2."""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from pathlib import Path

import pytest

from sift_graph.testing import script_for

from fault_server import FaultServer
from helpers import flatten, free_port, langgraph_dev, start_sift, wait_until

pytestmark = pytest.mark.slow  # real server processes

# Both predictions agree on 5 in round 1; the CoT baseline answers 4.
SCRIPT = flatten(script_for(["5"], ["5"], direct="4"))
QUESTIONS = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("server-eval")


@pytest.fixture(scope="module")
def dataset(folder) -> Path:
    """Questions whose gold answers alternate 5 (SIFT right) and 4 (CoT right)."""
    path = folder / "apples.jsonl"
    lines = [
        json.dumps({"question": f"Ann has {k} baskets of apples. How many apples? (#{k})", "answer": str(5 - k % 2)})
        for k in range(QUESTIONS)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scripted_model(folder) -> str:
    path = folder / "model.json"
    # Slow enough that an eval is killed with runs in flight.
    path.write_text(json.dumps({"script": SCRIPT, "latency": 0.15}), encoding="utf-8")
    return f"scripted:{path}"


@pytest.fixture(scope="module")
def server(folder, scripted_model):
    with langgraph_dev(folder / "server.log", {"SIFT_MODEL": scripted_model}, "--n-jobs-per-worker", "8") as url:
        yield url


def sift_eval(*args: str) -> tuple[int, str, str]:
    process = start_sift("eval", *args)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def table(printed: str) -> list[str]:
    """The eval's table and counts, without its title (which names the model) and wall time."""
    lines = printed.strip().splitlines()[1:]
    return [re.sub(r", wall time .*", "", line) for line in lines]


def test_a_server_eval_gives_the_table_of_a_local_eval(server, dataset, scripted_model, tmp_path):
    code, remote, err = sift_eval("--dataset", str(dataset), "--server", server, "--out", str(tmp_path / "remote"))
    assert code == 0, err
    assert remote.splitlines()[0].startswith(f"apples / sift on {server} (T=0")
    code, local, err = sift_eval(
        "--dataset", str(dataset), "--model", scripted_model, "--cache", "run", "--out", str(tmp_path / "local")
    )
    assert code == 0, err
    assert table(remote) == table(local)
    assert "stage 1   50.0" in remote and "CoT       50.0" in remote

    [remote_file] = (tmp_path / "remote").glob("*-*.jsonl")
    [local_file] = (tmp_path / "local").glob("*-*.jsonl")
    remote_record = json.loads(remote_file.read_text().splitlines()[0])
    local_record = json.loads(local_file.read_text().splitlines()[0])
    assert remote_record.keys() == local_record.keys()
    assert remote_record["sift"].keys() == local_record["sift"].keys()


async def test_a_killed_eval_rerun_counts_each_question_once_and_starts_no_run_twice(server, dataset, tmp_path):
    from langgraph_sdk import get_client

    out = tmp_path / "out"
    args = ("--dataset", str(dataset), "--server", server, "--out", str(out), "--concurrency", "3")
    first = start_sift("eval", *args)
    results = lambda: list(out.glob("*.jsonl"))  # noqa: E731
    journaled = lambda: sum(len(p.read_text().splitlines()) for p in out.glob("*.threads"))  # noqa: E731
    try:
        # Two questions recorded, and runs of later ones started: kill it there.
        wait_until(lambda: results() and len(results()[0].read_text().splitlines()) >= 2, "two records", 120)
        wait_until(lambda: journaled() >= 6, "later questions' runs to start", 60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    [result_file] = results()
    recorded_before = len(result_file.read_text().splitlines())
    assert recorded_before < QUESTIONS

    code, printed, err = sift_eval(*args)
    assert code == 0, err
    assert f"({recorded_before} of {QUESTIONS} already done)" in err
    records = [json.loads(line) for line in result_file.read_text().splitlines()]
    assert Counter(record["id"] for record in records) == Counter({record["id"]: 1 for record in records})
    assert len(records) == QUESTIONS and all(record["status"] == "ok" for record in records)
    assert f"{QUESTIONS} questions x 1 sample(s), {QUESTIONS} graded, 0 errors" in printed

    # On the server: one run per question and method, none started twice.
    client = get_client(url=server)
    threads = await client.threads.search(metadata={"sift_eval": str(result_file.resolve())}, limit=100)
    runs = Counter()
    for thread in threads:
        metadata = thread["metadata"]
        runs[(metadata["question"], metadata["method"])] += len(await client.runs.list(thread["thread_id"], limit=10))
    assert len(runs) == 2 * QUESTIONS and set(runs.values()) == {1}


def test_an_unreachable_server_or_unknown_assistant_is_one_line_and_exit_2(server, dataset, tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}"
    code, _, err = sift_eval("--dataset", str(dataset), "--server", nobody, "--out", str(tmp_path))
    assert code == 2 and err.strip().splitlines() == [err.strip()]
    assert f"cannot reach the LangGraph server at {nobody}" in err

    code, _, err = sift_eval(
        "--dataset", str(dataset), "--server", server, "--assistant", "nope", "--out", str(tmp_path)
    )
    assert code == 2 and err.strip() == f"sift: error: --assistant: the server at {server} has no assistant 'nope'"

    code, _, err = sift_eval(
        "--dataset", str(dataset), "--server", server, "--model", "openai:x", "--out", str(tmp_path)
    )
    assert code == 2 and "--model: chosen by the server's deployment" in err
    assert not list(tmp_path.glob("*.jsonl"))  # no question started


def test_a_server_eval_on_a_real_openai_compatible_model_matches_a_local_one(folder, dataset, tmp_path):
    upstream = FaultServer(SCRIPT).start()
    env = {"SIFT_MODEL": "openai:test-model", "SIFT_BASE_URL": upstream.base_url, "OPENAI_API_KEY": "sk-test"}
    try:
        with langgraph_dev(folder / "openai-server.log", env, "--n-jobs-per-worker", "8") as url:
            code, remote, err = sift_eval("--dataset", str(dataset), "--server", url, "--out", str(tmp_path / "r"))
            assert code == 0, err
        served_requests = len(upstream.requests)
        code, local, err = start_local_eval(dataset, upstream.base_url, tmp_path / "l")
        assert code == 0, err
    finally:
        upstream.stop()
    assert table(remote) == table(local)
    assert served_requests == len(upstream.requests) - served_requests  # the same calls, made once each way


def start_local_eval(dataset: Path, base_url: str, out: Path) -> tuple[int, str, str]:
    process = start_sift(
        "eval", "--dataset", str(dataset), "--model", "openai:test-model", "--base-url", base_url,
        "--cache", "run", "--out", str(out), env={"OPENAI_API_KEY": "sk-test"},
    )  # fmt: skip
    out_text, err = process.communicate(timeout=300)
    return process.returncode, out_text, err


async def test_a_run_that_fails_on_the_server_is_retried_once_then_recorded_as_an_error(folder, dataset, tmp_path):
    from langgraph_sdk import get_client

    from sift_graph.evaluation.server import SERVER_ATTEMPTS

    broken = folder / "broken-model.json"  # no reply for the baseline's role: every CoT run fails
    broken.write_text(json.dumps({"script": {k: v for k, v in SCRIPT.items() if k != "direct"}}), encoding="utf-8")
    with langgraph_dev(folder / "broken-server.log", {"SIFT_MODEL": f"scripted:{broken}"}) as url:
        code, _, err = sift_eval("--dataset", str(dataset), "--limit", "2", "--server", url, "--out", str(tmp_path))
        assert code == 1 and "every question failed" in err.strip().splitlines()[-1]
        [result_file] = tmp_path.glob("*.jsonl")
        records = [json.loads(line) for line in result_file.read_text().splitlines()]
        assert [record["status"] for record in records] == ["error", "error"]
        assert f"cot run failed on the server {SERVER_ATTEMPTS} times" in records[0]["error"]
        client = get_client(url=url)
        threads = await client.threads.search(metadata={"sift_eval": str(result_file.resolve())}, limit=100)
        methods = Counter(thread["metadata"]["method"] for thread in threads)
        assert methods == {"cot": 2 * SERVER_ATTEMPTS}  # a new thread per try; SIFT never started
