"""One run streamed to the terminal (`sift solve`): each stage's event as it is in, and
on a terminal the text of each stage as it is generated (`live`)."""

from __future__ import annotations

from typing import Any, TextIO

from langchain_core.runnables import RunnableConfig

from sift_graph.cli.common import ModelFault
from sift_graph.cli.output import format_event
from sift_graph.context import SiftContext
from sift_graph.faults import describe_fault, is_model_fault
from sift_graph.live import LiveText, StageText
from sift_graph.run_items import RunFinished, run_items


async def stream_run(
    graph: Any,
    inputs: dict[str, Any] | None,
    config: RunnableConfig,
    context: SiftContext,
    progress: TextIO,
    live: bool = False,
) -> dict[str, Any]:
    """Stream one run (a new one, or the rest of an interrupted one) stage by stage;
    `live`: with the text of each stage as it is generated."""
    result: dict[str, Any] = {}
    text = LiveText()
    try:
        async for item in run_items(graph, inputs, config, context, live=live):
            if isinstance(item, StageText):
                print(text.add(item), end="", file=progress, flush=True)
            elif isinstance(item, RunFinished):
                result = item.output
                print(text.flush(), end="", file=progress, flush=True)
            else:
                print(text.line(format_event(item)), end="", file=progress, flush=True)
    except BrokenPipeError:  # our reader went away (`| head`): no model's fault (exit 141)
        raise
    except Exception as exc:  # a model fault that retries could not fix
        if not is_model_fault(exc):
            raise
        raise ModelFault(describe_fault(exc)) from exc
    return result
