"""A KV cache whose decoding steps write in place.

transformers' `DynamicLayer` appends a step's keys and values with `torch.cat`, which
copies the whole cache every step: for a batch of 16 rows of 800 tokens that copy was a
third of a step on our CPU. `GrowingLayer` keeps its keys and values at the front of
buffers with room to spare and writes each step into the room; only a change of the
batch's rows (a row joining or leaving, which replaces the tensors) and running out of
room copy the cache.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

_ROOM = 0.25
"""Spare room a buffer gets when it is (re)allocated, as a share of what it holds."""
_MIN_ROOM = 64


def _is_front_of(tensor: torch.Tensor, buffer: torch.Tensor | None) -> bool:
    """Whether `tensor` is `buffer[..., :n, :]`, so that writing past it is safe."""
    return (
        buffer is not None
        and tensor.data_ptr() == buffer.data_ptr()
        and tensor.shape[:2] == buffer.shape[:2]
        and tensor.stride() == buffer.stride()
    )


def _write(front: torch.Tensor, buffer: torch.Tensor | None, new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(front + new as a view of a buffer, that buffer), reusing `buffer` when there is room."""
    length, extra = front.shape[-2], new.shape[-2]
    if buffer is None or not _is_front_of(front, buffer) or buffer.shape[-2] < length + extra:
        room = max(_MIN_ROOM, int((length + extra) * _ROOM))
        grown = new.new_empty((*new.shape[:2], length + extra + room, new.shape[-1]))
        grown[..., :length, :] = front
        buffer = grown
    buffer[..., length : length + extra, :] = new
    return buffer[..., : length + extra, :], buffer


class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]  # (transformers' __init_subclass__)
    """A full-attention cache layer that writes new states in place (see the module docstring).

    `keys` and `values` stay ordinary tensors ([rows, heads, length, head_dim]); code
    that replaces them (padding, stacking, dropping rows) needs to know nothing of the
    buffers: a replaced tensor simply gets a new buffer at the next step."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized or self.keys is None or self.values is None or self.keys.numel() == 0:
            self.lazy_initialization(key_states, value_states)
            self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
        assert self.keys is not None and self.values is not None
        self.keys, self._key_buffer = _write(self.keys, self._key_buffer, key_states)
        self.values, self._value_buffer = _write(self.values, self._value_buffer, value_states)
        return self.keys, self.values


def growing_cache(config: Any) -> DynamicCache:
    """The model's usual dynamic cache, its full-attention layers growing in place (other
    kinds, such as sliding-window layers, are kept as transformers builds them)."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
