"""One run streamed as what a reader shows, the loop `sift solve` and `sift serve` share:
each stage event as it happens, each stage's text as it is generated (`live`), then the
run's output.

    async for item in run_items(graph, {"question": q}, config, context, live=True):
        ...  # a StageEvent, a StageText, and last a RunFinished
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import StreamMode

from sift_graph.checkpoints import RUN_DURABILITY
from sift_graph.context import SiftContext
from sift_graph.events import StageEvent
from sift_graph.live import StageText, stage_text
from sift_graph.state import output_of


@dataclass(frozen=True)
class RunFinished:
    output: dict[str, Any]
    """The run's `SiftOutput`."""


RunItem = StageEvent | StageText | RunFinished


async def run_items(
    graph: Any, inputs: dict[str, Any] | None, config: RunnableConfig, context: SiftContext, *, live: bool
) -> AsyncIterator[RunItem]:
    """Stream one run (a new one, or with `inputs` None the rest of an interrupted one):
    its stage events, with `live` each stage's text as it is generated, and last its
    output. A fault of the run is raised where it happens."""
    modes: list[StreamMode] = ["custom", "values", "messages"] if live else ["custom", "values"]
    output: dict[str, Any] = {}
    async for mode, chunk in graph.astream(
        inputs, config, context=context, stream_mode=modes, durability=RUN_DURABILITY
    ):
        if mode == "custom":
            yield chunk
        elif mode == "messages":  # a stage's tokens as they are generated
            if (text := stage_text(*chunk)) is not None:
                yield text
        else:
            output = output_of(chunk)
    yield RunFinished(output)
