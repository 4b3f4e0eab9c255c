"""`sift serve`: SIFT behind an OpenAI-compatible API, each stage streamed as it happens.

- `settings`: what a server is configured with (flags, or the environment);
- `protocol`: a chat completion request read into a question and run settings;
- `payloads`: completions, stream chunks, usage and the `sift` object;
- `errors`: OpenAI-shaped errors and their statuses;
- `store`: the checkpoint store, its SQLite writes off the event loop;
- `service`: each request's run in its own task, bounded, checkpointed, cancellable;
- `app`: the Starlette routes (`create_app`, `app_from_env` for the LangGraph server).
"""

from sift_graph.serve.app import THREAD_HEADER, app_from_env, create_app
from sift_graph.serve.service import SiftService
from sift_graph.serve.settings import MODEL_ID, ServeSettings, settings_from_env
from sift_graph.serve.store import StoreUnavailable

__all__ = [
    "MODEL_ID",
    "THREAD_HEADER",
    "ServeSettings",
    "SiftService",
    "StoreUnavailable",
    "app_from_env",
    "create_app",
    "settings_from_env",
]
