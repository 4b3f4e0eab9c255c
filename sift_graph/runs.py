"""A SIFT run as a checkpoint store keeps it: a thread id, and the settings the run started
with in the checkpoint metadata, so that any process (`sift solve --resume THREAD`) can
continue a run that `sift solve` or `sift serve` started.

    config = run_config(new_thread_id(), context)
    graph.astream({"question": q}, config, context=context, durability=RUN_DURABILITY)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig

from sift_graph.context import SiftContext

SETTINGS_METADATA_KEY = "sift_settings"
"""Checkpoint metadata key of a run's settings (`SiftContext.stored_settings`, as JSON:
LangGraph keeps only scalar metadata). The API key is never among them."""


def new_thread_id() -> str:
    return str(uuid.uuid4())


def settings_metadata(context: SiftContext) -> dict[str, str]:
    """The checkpoint metadata that records `context` for a later `--resume`."""
    return {SETTINGS_METADATA_KEY: json.dumps(context.stored_settings())}


def stored_settings_of(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings a run's checkpoint metadata recorded (empty if none)."""
    settings: dict[str, Any] = json.loads(str((metadata or {}).get(SETTINGS_METADATA_KEY) or "{}"))
    return settings


def thread_config(thread_id: str) -> RunnableConfig:
    """The config that names a run's thread: what reads its state."""
    return {"configurable": {"thread_id": thread_id}}


def run_config(thread_id: str, context: SiftContext) -> RunnableConfig:
    """The config of a run: its thread, and its settings in the checkpoint metadata."""
    return {**thread_config(thread_id), "metadata": settings_metadata(context)}
