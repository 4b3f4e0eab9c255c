"""Stream SIFT's progress: each stage as it happens, with its timing, from an async run.

    .venv/bin/python examples/stream_progress.py [--model SPEC] [--max-tokens N]

`stream_mode="custom"` carries SIFT's stage events (sticker, predictions, consensus,
fallback); `"updates"` says which node finished. The run is async: with a served model
(`openai:` spec) the two predictions of a round are in flight together.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from sift_graph import SiftContext, build_sift_graph
from sift_graph.events import StageEvent

QUESTION = "Tom has 3 boxes of 12 pencils and gives away 10 pencils. How many pencils does he have left?"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    graph = build_sift_graph().compile()
    context = SiftContext(model=args.model, base_url=args.base_url, max_tokens=args.max_tokens)
    started = time.monotonic()
    async for mode, chunk in graph.astream({"question": QUESTION}, context=context, stream_mode=["custom", "updates"]):
        clock = f"{time.monotonic() - started:6.1f}s"
        if mode == "updates":
            print(f"{clock}  done: {', '.join(chunk)}")
            continue
        event: StageEvent = chunk  # the streaming contract: sift_graph.events
        if event["stage"] == "prediction":
            print(f"{clock}    {event['role']}: {event['answer'] or '(none)'}")
        elif event["stage"] == "consensus":
            print(f"{clock}    {'consensus' if event['agreed'] else 'no consensus'}: {event['answers']}")
        elif event["stage"] == "direct":
            print(f"{clock}    fallback answer: {event['answer']}")
        else:
            print(f"{clock}    {event['stage']} (round {event['round']}) ready")


if __name__ == "__main__":
    asyncio.run(main())
