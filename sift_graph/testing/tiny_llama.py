"""A tiny randomly initialized Llama chat model, built on the spot (about 150 KB).

For the local engine's tests and benchmarks where no model file can go (GPU machines take
no model files) or where a real model would be slow: one decoder layer, a byte-level BPE
tokenizer trained in a second on a few sentences, and a ChatML chat template. Its replies
are noise, but deterministic noise: greedy decoding gives the same tokens every time.
Weights are drawn wider than a trained model's (so that different prompts give different
replies, not one repeated token) and the end-of-turn token's output row is scaled up (so
that about half the replies end on their own within 40 tokens, at varied lengths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

END_OF_TURN = "<|im_end|>"
_SPECIAL_TOKENS = ["<pad>", "<|im_start|>", END_OF_TURN]
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four.",
    "She sells the remainder at the farmers' market daily for $2 per fresh duck egg.",
    "**Conditions:** 1. A pen costs $2. 2. Tom buys 3 pens. **Question:** How much does Tom pay?",
    "Let's think step by step and put the final answer in \\boxed{}. The answer is 6.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 + - * / = ( ) plus minus times half twice",
]


def build_tiny_llama(
    folder: str | Path, *, seed: int = 0, layers: int = 1, vocab_size: int = 512, end_of_turn_scale: float = 1.6
) -> Path:
    """Write a tiny random Llama and its tokenizer to `folder` (a transformers model folder).
    An `end_of_turn_scale` of 1 leaves the end-of-turn token as rare as any other: replies
    then run to their token limit."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, pad_token="<pad>", eos_token=END_OF_TURN, chat_template=_CHAT_TEMPLATE
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        initializer_range=0.3,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] *= end_of_turn_scale
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target = Path(folder)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def load_tiny_llama(folder: str | Path, *, dtype: str = "float32", **build: Any) -> BaseChatModel:
    """A `LocalChatModel` over a tiny random Llama built into `folder` (`build` goes to
    `build_tiny_llama`)."""
    from sift_graph.models.local import load_local_model

    return load_local_model(build_tiny_llama(folder, **build), dtype=dtype)
