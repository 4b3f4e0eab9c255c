"""The rows a local model decodes together: one left-padded KV cache, its attention mask
and each row's last token.

Rows join between two decoding steps (their prompts prefilled as a batch of their own,
then their cache padded on the left to the batch's length and stacked under it) and
leave as soon as they finish (their cache rows dropped, and the columns that only
padding still uses cut off). This is what `generate` does with a left-padded batch,
except that the batch is not fixed: a request waits at most one step to join.

Padding never reaches a real token's attention: a padded position is masked out, and
positions are counted from each row's first real token, as `generate` counts them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from sift_graph.models.kv_cache import GrowingLayer, growing_cache
from sift_graph.models.prefix_cache import LayerStates

# Cache layers whose rows can be padded, stacked and dropped: plain full attention.
_FULL_ATTENTION = (DynamicLayer, GrowingLayer)


@dataclass
class PaddedBatch:
    """`cache` holds [rows, heads, length, head_dim] per layer; `mask` is [rows, length]
    (0 on padding); `last` is [rows], the token each row feeds to the next step."""

    cache: DynamicCache
    mask: torch.Tensor
    last: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    def mergeable(self) -> bool:
        """Whether other rows can join mid-flight. Only plain full-attention layers can be
        padded and stacked; a sliding-window or otherwise special cache waits for its batch
        to finish before the next one starts."""
        return all(type(layer) in _FULL_ATTENTION for layer in self.cache.layers)


def _forward(model: Any, input_ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """The next-token logits (fp32) of each row."""
    positions = mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(mask == 0, 1)[:, -input_ids.shape[1] :]
    output = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    logits: torch.Tensor = output.logits[:, -1, :]
    return logits.float()


def _left_padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[rows, longest] token ids, padding on the left, and the mask of the real ones."""
    length = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            input_ids[row, length - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
            mask[row, length - len(sequence) :] = 1
    return input_ids, mask


def _reused_cache(model: Any, reused: list[tuple[LayerStates, int] | None]) -> tuple[DynamicCache, torch.Tensor]:
    """A cache holding each row's reused prefix (left-padded to the longest), and its mask."""
    cache = growing_cache(model.config)
    length = max((shared for _, shared in filter(None, reused)), default=0)
    mask = torch.zeros((len(reused), length), dtype=torch.long)
    if length == 0:
        return cache, mask
    template = next(states for states, _ in filter(None, reused))
    for index, layer in enumerate(cache.layers):
        if not isinstance(layer, DynamicLayer):
            raise TypeError(f"cannot reuse a prefix in a {type(layer).__name__} cache layer")
        keys, values = [], []
        for row, found in enumerate(reused):
            shared = found[1] if found else 0
            row_keys, row_values = found[0][index] if found else (template[index][0][..., :0, :],) * 2
            keys.append(functional.pad(row_keys, (0, 0, length - shared, 0)))
            values.append(functional.pad(row_values, (0, 0, length - shared, 0)))
            mask[row, length - shared :] = 1
        layer.lazy_initialization(keys[0], values[0])
        layer.keys, layer.values = torch.cat(keys), torch.cat(values)
    return cache, mask


def prefill(
    model: Any, prompts: list[list[int]], pad_id: int, reused: list[tuple[LayerStates, int] | None] | None = None
) -> tuple[PaddedBatch, torch.Tensor]:
    """Run prompts through the model as one left-padded batch: their rows (without a
    next token yet) and the logits of each row's first new token.

    A row with a reused prefix ((states, n) from a `PrefixCache`) starts from those states
    and runs only its tokens past n: its row is [padding, prefix, padding, the rest]."""
    reused = reused or [None] * len(prompts)
    device = model.device
    cache, prefix_mask = _reused_cache(model, reused)
    rest = [prompt[found[1] if found else 0 :] for prompt, found in zip(prompts, reused, strict=True)]
    input_ids, mask = _left_padded(rest, pad_id)
    input_ids, mask = input_ids.to(device), torch.cat([prefix_mask, mask], dim=1).to(device)
    logits = _forward(model, input_ids, mask, cache)
    empty = torch.zeros(len(prompts), dtype=torch.long, device=device)
    return PaddedBatch(cache=cache, mask=mask, last=empty), logits


def row_states(batch: PaddedBatch, row: int) -> LayerStates:
    """One row's keys and values without its padding (what a `PrefixCache` keeps)."""
    columns = batch.mask[row].nonzero().squeeze(-1)
    return [
        (keys[row : row + 1, :, columns, :], values[row : row + 1, :, columns, :]) for _, keys, values in _layers(batch)
    ]


def _layers(batch: PaddedBatch) -> list[tuple[DynamicLayer, torch.Tensor, torch.Tensor]]:
    """Each full-attention layer with its keys and values ([rows, heads, length, head_dim])."""
    found = []
    for layer in batch.cache.layers:
        if not isinstance(layer, DynamicLayer) or type(layer) not in _FULL_ATTENTION:
            raise TypeError(f"cannot reshape a {type(layer).__name__} cache layer")
        keys, values = layer.keys, layer.values
        if keys is None or values is None:
            raise TypeError("cannot reshape an empty cache layer")
        found.append((layer, keys, values))
    return found


def _reshape(batch: PaddedBatch, change: Callable[[torch.Tensor], torch.Tensor]) -> None:
    for layer, keys, values in _layers(batch):
        layer.keys, layer.values = change(keys), change(values)


def _pad_left(batch: PaddedBatch, columns: int) -> None:
    if columns > 0:
        _reshape(batch, lambda states: functional.pad(states, (0, 0, columns, 0)))
        batch.mask = functional.pad(batch.mask, (columns, 0))


def merge(batch: PaddedBatch | None, joining: PaddedBatch) -> PaddedBatch:
    """`batch` with the rows of `joining` stacked under it (both padded to one length)."""
    if batch is None:
        return joining
    _pad_left(batch, joining.length - batch.length)
    _pad_left(joining, batch.length - joining.length)
    for (layer, keys, values), (_, extra_keys, extra_values) in zip(_layers(batch), _layers(joining), strict=True):
        layer.keys, layer.values = torch.cat([keys, extra_keys]), torch.cat([values, extra_values])
    batch.mask = torch.cat([batch.mask, joining.mask])
    batch.last = torch.cat([batch.last, joining.last])
    return batch


def decode(model: Any, batch: PaddedBatch) -> torch.Tensor:
    """One step: feed each row its last token; the logits of the next one."""
    batch.mask = functional.pad(batch.mask, (0, 1), value=1)
    return _forward(model, batch.last[:, None], batch.mask, batch.cache)


def keep_rows(batch: PaddedBatch, rows: list[int]) -> PaddedBatch | None:
    """Only `rows` (in that order), without the leading columns none of them uses; None
    when no row is left."""
    if not rows:
        return None
    if rows == list(range(batch.size)):
        return batch
    index = torch.tensor(rows, dtype=torch.long, device=batch.mask.device)
    batch.cache.batch_select_indices(index)
    batch.mask, batch.last = batch.mask[index], batch.last[index]
    unused = int(batch.mask.any(0).int().argmax())  # the first column some row still uses
    if unused and batch.mergeable():
        _reshape(batch, lambda states: states[..., unused:, :])
        batch.mask = batch.mask[:, unused:]
    return batch
