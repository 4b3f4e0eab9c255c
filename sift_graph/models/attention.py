"""Attention for decoding steps in bf16 on a CPU, registered with transformers.

A decoding step has one query per row, which PyTorch's CPU SDPA kernel serves slowly in
bf16: at 16 rows of 800 tokens it took 2.4 ms a layer, about half of a step, where two
matrix products over the key/value heads (the query heads of a group stacked, as
transformers' own `pack_gqa` does) take 1.1 ms. The arithmetic is transformers' eager
attention: scores in the model's dtype, softmax in fp32. Every other case (prefill,
fp32, a GPU) goes to SDPA unchanged, and the masks are SDPA's.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

DECODE_ATTENTION = "sift_cpu_decode"
"""The attn_implementation name this module registers."""


def _wants_sdpa(query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None) -> bool:
    one_query = query.shape[2] == 1
    boolean_mask = attention_mask is None or attention_mask.dtype == torch.bool
    return not (one_query and boolean_mask and query.device.type == "cpu" and query.dtype != torch.float32)


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """[rows, heads, 1, dim] queries over [rows, kv_heads, length, dim] keys and values
    -> [rows, 1, heads, dim], as `sdpa_attention_forward` returns it."""
    if _wants_sdpa(query, key, attention_mask):
        output: tuple[torch.Tensor, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return output
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * (dim**-0.5 if scaling is None else scaling)
    if attention_mask is not None:  # [rows, 1, 1, length], True where a row may look
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    weights = scores.softmax(dim=-1).to(value.dtype)
    return torch.matmul(weights, value).reshape(rows, heads, 1, dim).transpose(1, 2), None


def use_decode_attention(model: Any) -> None:
    """Switch a freshly loaded model's attention (SDPA) to `decode_attention` where it
    helps: a model in bf16 (or fp16) on the CPU."""
    if model.device.type == "cpu" and model.dtype != torch.float32:
        AttentionInterface.register(DECODE_ATTENTION, decode_attention)
        AttentionMaskInterface.register(DECODE_ATTENTION, sdpa_mask)
        model.set_attn_implementation(DECODE_ATTENTION)
