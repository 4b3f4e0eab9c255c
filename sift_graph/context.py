"""Run-scoped configuration: which model answers and how hard SIFT tries.

Passed as `context=SiftContext(...)` to `invoke`/`stream`; nodes read it from `Runtime`.
It never enters the checkpointed state, so a model object or an API key stays out of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from langchain_core.language_models import BaseChatModel

from sift_graph.models import Connection, validate_model_spec

Comparator = Literal["math", "string"]


@dataclass(kw_only=True)
class SiftContext:
    """Settings for one SIFT run.

    Attributes:
        model: A LangChain chat model, or a spec string (`default`,
            `hf:<folder|file.gguf|hub id>`, `openai:<model>`). None means the embedded
            default (SmolLM2-135M-Instruct).
        base_url: The OpenAI-compatible server of an `openai:` spec (else $OPENAI_BASE_URL).
        api_key: Its API key (else $OPENAI_API_KEY). Never put in state, checkpoints,
            results or logs; hidden from `repr`.
        request_timeout: Seconds one model request may take before it counts as failed.
        forward_rounds: Rounds of forward optimization after the first round (paper: 1).
        inverse_rounds: Rounds of inverse generation + forward optimization (paper: 1).
        max_tokens: New-token limit of every model call.
        temperature: Sampling temperature; 0 is greedy decoding.
        top_p: Nucleus sampling mass, used only when temperature > 0.
        comparator: `math` (equivalence by math-verify) or `string` (the paper's
            reference code: normalized string equality, for reproducing its numbers).
    """

    model: BaseChatModel | str | None = None
    forward_rounds: int = 1
    inverse_rounds: int = 1
    max_tokens: int = 1024
    temperature: float = 0.0
    top_p: float | None = None
    comparator: Comparator = "math"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    request_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not (self.model is None or isinstance(self.model, (str, BaseChatModel))):
            raise ValueError(
                "model: expected a LangChain BaseChatModel, a spec string or None, "
                f"got {type(self.model).__name__}"
            )
        if isinstance(self.model, str):
            validate_model_spec(self.model)
        for name in ("forward_rounds", "inverse_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens: expected an integer >= 1, got {self.max_tokens!r}")
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature: expected a number in [0, 2], got {self.temperature!r}")
        if self.top_p is not None and not (
            isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1
        ):
            raise ValueError(f"top_p: expected a number in (0, 1] or None, got {self.top_p!r}")
        if not isinstance(self.request_timeout, (int, float)) or self.request_timeout <= 0:
            raise ValueError(f"request_timeout: expected a number of seconds > 0, got {self.request_timeout!r}")
        if self.base_url is not None and not (
            isinstance(self.base_url, str) and self.base_url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"base_url: expected an http:// or https:// URL, got {self.base_url!r}")
        if self.comparator not in ("math", "string"):
            raise ValueError(f"comparator: expected 'math' or 'string', got {self.comparator!r}")

    @property
    def connection(self) -> Connection:
        return Connection(base_url=self.base_url, api_key=self.api_key, timeout=float(self.request_timeout))
