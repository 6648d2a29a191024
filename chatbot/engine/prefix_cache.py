"""Reusing the system prompt's keys and values: the first token comes after the user's words only.

Every prompt of a mode starts with the same tokens: the system block (the brand's prompt is about
200 tokens for the demo brand) and the header of the first user turn. Running them through the
model on every request is most of the wait before the first token on a CPU. `PrefixStore` keeps
their attention keys and values per (prefix, adapter on/off) — the adapter changes the key and
value projections, so a tuned prefix is not a base prefix — and `batch_inputs` assembles a batch
whose rows start from those cached states.

A row of the batch is laid out as `[pad][prefix][pad][rest]`: the prefixes are left-padded to a
common length and so are the remaining parts, with an attention mask over the whole. Positions
come from the mask (`generate` counts only unmasked tokens), so every row sees exactly the
positions it would see alone, and the cached prefix states, computed alone, are valid in the batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["MIN_PREFIX", "PrefixStore", "Prompt", "batch_inputs", "common_prefix"]

MIN_PREFIX = 8
"""Shorter shared prefixes are not worth a cache entry."""

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer, keys and values of shape (1, kv_heads, prefix_length, head_dim)."""


@dataclass(frozen=True)
class Prompt:
    """One row's prompt ids; the first `prefix` of them are shared by every prompt of its mode."""

    ids: list[int]
    prefix: int = 0


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):  # noqa: B905 - stops at the shorter on purpose
        if x != y:
            break
        n += 1
    return n


class PrefixStore:
    """The keys and values of recently used prefixes; the least recently used is dropped first."""

    def __init__(self, max_entries: int = 8) -> None:
        self._entries: OrderedDict[tuple[Any, ...], KeyValues] = OrderedDict()
        self._max_entries = max_entries

    def get(self, key: tuple[Any, ...]) -> KeyValues | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[Any, ...], states: KeyValues) -> None:
        self._entries[key] = states
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def prefix_states(cache: Any) -> KeyValues:
    """Keys and values per layer from the cache a forward pass returned."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def batch_inputs(
    prompts: Sequence[Prompt],
    states: Sequence[KeyValues | None],
    pad_id: int,
    model_config: Any,
    device: torch.device,
) -> dict[str, Any]:
    """`generate` inputs for `prompts`, starting from the cached `states` of their prefixes.

    A row whose state is None is computed in full. Returns input_ids, attention_mask and, when any
    row has a cached prefix, the cache (under `generate`'s keyword `cache`).
    """
    cached = [p.prefix if s is not None else 0 for p, s in zip(prompts, states, strict=True)]
    width = max(cached)
    rest = max(len(p.ids) - n for p, n in zip(prompts, cached, strict=True))
    ids, mask = [], []
    for prompt, n in zip(prompts, cached, strict=True):
        head, tail = prompt.ids[:n], prompt.ids[n:]
        gap_head, gap_tail = width - len(head), rest - len(tail)
        ids.append([pad_id] * gap_head + head + [pad_id] * gap_tail + tail)
        mask.append([0] * gap_head + [1] * len(head) + [0] * gap_tail + [1] * len(tail))
    inputs: dict[str, Any] = {
        "input_ids": torch.tensor(ids, dtype=torch.long, device=device),
        "attention_mask": torch.tensor(mask, dtype=torch.long, device=device),
    }
    if width:
        inputs["cache"] = _batched_cache(states, cached, width, model_config)
    return inputs


def _batched_cache(
    states: Sequence[KeyValues | None], lengths: list[int], width: int, model_config: Any
) -> Any:
    """One cache for the batch: each row's prefix states left-padded with zeros to `width`."""
    from transformers import DynamicCache

    template = next(s for s in states if s is not None)
    layers = []
    for layer, (keys0, values0) in enumerate(template):
        keys, values = [], []
        for row_states, n in zip(states, lengths, strict=True):
            if row_states is None or n == 0:
                shape = (1, keys0.shape[1], width, keys0.shape[3])
                keys.append(keys0.new_zeros(shape))
                values.append(values0.new_zeros(shape[:3] + (values0.shape[3],)))
                continue
            k, v = row_states[layer]
            # Padding goes before the prefix (dim -2 is the sequence): masked, never attended to.
            keys.append(F.pad(k[:, :, :n], (0, 0, width - n, 0)))
            values.append(F.pad(v[:, :, :n], (0, 0, width - n, 0)))
        layers.append((torch.cat(keys), torch.cat(values)))
    return DynamicCache(ddp_cache_data=layers, config=model_config)
