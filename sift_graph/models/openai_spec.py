"""The `openai:` spec: a client for an OpenAI-compatible server (`openai_compat`), with
its server and key from the run's connection or the environment."""

from __future__ import annotations

import os

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from sift_graph.models.openai_compat import OpenAICompatibleChatModel
from sift_graph.models.openai_errors import NO_KEY
from sift_graph.models.specs import Connection, LoadOptions


def load_spec_target(model_name: str, connection: Connection, options: LoadOptions | None = None) -> BaseChatModel:
    """The `openai:<model_name>` spec (load options are the server's business)."""
    return load_openai_model(model_name, connection)


def load_openai_model(model_name: str, connection: Connection) -> BaseChatModel:
    """A chat model behind an OpenAI-compatible server.

    The client's own retries are off (`max_retries=0`): the graph's RetryPolicy retries
    transient faults, and two retry layers would multiply each other.
    """
    base_url = connection.base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = connection.api_key or os.environ.get("OPENAI_API_KEY") or None
    if base_url is None and api_key is None:
        raise ValueError(
            "api_key: OpenAI itself needs an API key (--api-key or $OPENAI_API_KEY); "
            "for a local server give its base_url"
        )
    return OpenAICompatibleChatModel(
        model=model_name,
        base_url=base_url,
        api_key=SecretStr(api_key or NO_KEY),
        timeout=connection.timeout,
        max_retries=0,
        # The official API has renamed the limit; servers such as llama.cpp's only know the old name.
        token_limit_param="max_completion_tokens" if base_url is None else "max_tokens",
    )
