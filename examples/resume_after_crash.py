"""Resume a SIFT run after its process was killed with kill -9, losing no finished call.

    .venv/bin/python examples/resume_after_crash.py [--model SPEC] [--max-tokens N]

1. `sift solve` runs in a child process, checkpointing into a SQLite file;
2. the child is killed with SIGKILL as soon as it prints round 1's first prediction,
   while the second is still in flight;
3. this process opens the same file and continues the thread with `graph.stream(None,
   config)`: the sticker and every prediction that had finished are kept, and the run goes
   on from there.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sift_graph import SiftContext, build_sift_graph
from sift_graph.checkpoints import RUN_DURABILITY, open_checkpointer

QUESTION = "A pen costs $2 and a notebook costs 3 times as much. How much do 2 pens and 1 notebook cost?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    checkpoints = str(Path(tempfile.mkdtemp(prefix="sift-resume-")) / "runs.sqlite")

    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sift_graph.cli",
            "solve",
            QUESTION,
            "--model",
            args.model,
            "--max-tokens",
            str(args.max_tokens),
            "--checkpoints",
            checkpoints,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    thread_id = ""
    for line in child.stdout:
        print(f"  child | {line.rstrip()}")
        if line.startswith("thread: "):
            thread_id = line.removeprefix("thread: ").strip()
        if line.startswith("[round 1] answer from"):
            # The stage is printed from inside the node, a moment before its result is
            # checkpointed: give that write its moment, then crash mid-round.
            time.sleep(0.5)
            child.send_signal(signal.SIGKILL)  # no cleanup, no goodbye: a crash
            break
    child.wait()
    print(f"child killed (exit {child.returncode}); resuming thread {thread_id} here")

    with open_checkpointer(checkpoints) as saver:
        graph = build_sift_graph().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": thread_id}}
        saved = graph.get_state(config)
        print(f"saved: round 1 sticker, question {saved.values['sticker']['question']!r}")
        for task in saved.tasks:  # a task with a result finished before the kill: it is not run again
            print(f"saved: {task.name}: {'finished, kept' if task.result is not None else 'to run'}")
        context = SiftContext(model=args.model, max_tokens=args.max_tokens)  # the run's context, as started
        for event in graph.stream(None, config, context=context, stream_mode="custom", durability=RUN_DURABILITY):
            print(f"  resumed | {event['stage']} (round {event.get('round', '-')})")
        result = graph.get_state(config).values
    print(f"answer: {result['answer']}  consensus round: {result['consensus_round']}")
    print(f"calls over both processes, by role: { {r: u['calls'] for r, u in result['usage'].items()} }")


if __name__ == "__main__":
    main()
