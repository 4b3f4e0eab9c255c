"""SIFT's OpenAI-compatible API (`sift serve`'s routes) as the LangGraph server's custom
HTTP app (langgraph.json `http.app`): one deployment serves the LangGraph API (Studio,
the SDK) and `/v1/models`, `/v1/chat/completions` side by side, and `/view/` shows the
deployment's own runs read-only (`sift view`'s pages, by thread id).

Configured from the server's environment: `SIFT_MODEL`, `SIFT_MAX_TOKENS` and the other
`SIFT_<FIELD>` settings, `OPENAI_API_KEY` / `OPENAI_BASE_URL` for an `openai:` model,
`SIFT_MAX_TOKENS_LIMIT`, `SIFT_CHECKPOINTS` and `SIFT_MAX_CONCURRENCY` (see
`sift_graph.serve.settings`). Its middleware refuses a deployment setting in any run's or
assistant's context on the server's own routes (`sift_graph.serve.guard`).
"""

from sift_graph.serve import app_from_env

app = app_from_env()
