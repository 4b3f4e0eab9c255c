"""One run streamed to the terminal (`sift solve`): each stage's event as it is in, and
on a terminal the text of each stage as it is generated (`live`)."""

from __future__ import annotations

from typing import Any, TextIO

from langchain_core.runnables import RunnableConfig
from langgraph.types import StreamMode

from sift_graph.checkpoints import RUN_DURABILITY
from sift_graph.cli.common import ModelFault, is_model_fault
from sift_graph.cli.output import format_event
from sift_graph.context import SiftContext
from sift_graph.faults import describe_fault
from sift_graph.live import LiveText, stage_text
from sift_graph.state import output_of


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
    modes: list[StreamMode] = ["custom", "values", "messages"] if live else ["custom", "values"]
    text = LiveText()
    try:
        async for mode, chunk in graph.astream(
            inputs, config, context=context, stream_mode=modes, durability=RUN_DURABILITY
        ):
            if mode == "messages":
                if (piece := stage_text(*chunk)) is not None:
                    print(text.add(piece), end="", file=progress, flush=True)
            elif mode == "custom":
                print(format_event(chunk), file=progress, flush=True)
            else:
                result = output_of(chunk)
    except BrokenPipeError:  # our reader went away (`| head`): no model's fault (exit 141)
        raise
    except Exception as exc:  # a model fault that retries could not fix
        if not is_model_fault(exc):
            raise
        raise ModelFault(describe_fault(exc)) from exc
    return result
