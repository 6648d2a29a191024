"""A step's conversations as packed rows: the shared prefix once, a token budget per row.

Every conversation of a brand starts with the same tokens: the system block (the style prompt,
187 tokens on the demo brand, more than half of a typical example) and the customer's turn header.
`PackedCollator` lays those tokens down once per row and lets each conversation continue after
them:

- a conversation's tokens attend to the shared prefix and to their own earlier tokens, never to
  another conversation's (a 4-D boolean attention mask, which transformers passes through as is);
- their position ids continue from the prefix's end, as if the conversation were alone;

so every learned token sees exactly the keys and values it would see in its own sequence: the loss
and its gradients are those of the plain batch (gradients reach the prefix's activations through
every conversation that attends to them), while the prefix is computed once per row instead of
once per conversation.

Rows hold at most `max_tokens` tokens, padding included, so peak memory is bounded whatever the
conversations' lengths: a step's conversations are spread over as many rows as needed
(first-fit by decreasing length), and the trainer runs them one after the other, accumulating
gradients (`BrandTrainer.training_step`). The optimizer step still sees `batch_size`
conversations.

transformers' own padding-free collator cannot share a prefix (its segments are independent), and
TRL's `bfd` packing splits conversations across rows; hence this collator.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch

from chatbot.training.data import IGNORE_INDEX

__all__ = ["PackedCollator", "shared_prefix_length", "plan_rows", "pack_row", "ROWS", "REAL_TOKENS"]

# Batch keys: the packed rows of a step's conversations, and the tokens they stand for.
ROWS = "rows"
REAL_TOKENS = "real_tokens"
FINGERPRINTS = "fingerprints"

Example = dict[str, list[int]]


def shared_prefix_length(examples: Sequence[Example]) -> int:
    """How many leading tokens every example shares and none learns.

    The prefix stops before the first learned token of any example, and one token earlier still:
    the prefix's last position predicts the next token of only one conversation in a packed row, so
    that next token must not be learned by any of them.
    """
    first = examples[0]["input_ids"]
    length = len(first)
    for example in examples:
        ids = example["input_ids"]
        length = min(length, len(ids))
        for i in range(length):
            if ids[i] != first[i]:
                length = i
                break
        learned = next((i for i, t in enumerate(example["labels"]) if t != IGNORE_INDEX), len(ids))
        length = min(length, max(learned - 1, 0))
    return length


def plan_rows(suffix_lengths: Sequence[int], prefix: int, max_tokens: int) -> list[list[int]]:
    """Indices of the conversations in each row: first fit, longest first, under `max_tokens`.

    A row holds the prefix plus its conversations' suffixes. Conversations never exceed
    `max_tokens` on their own (training cuts them to `max_length` <= `max_tokens`).
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(suffix_lengths)), key=lambda i: -suffix_lengths[i]):
        need = suffix_lengths[i]
        slot = next((r for r, free in enumerate(room) if free >= need), None)
        if slot is None:
            rows.append([i])
            room.append(max_tokens - prefix - need)
        else:
            rows[slot].append(i)
            room[slot] -= need
    return rows


def pack_row(
    examples: Sequence[Example], prefix: int, *, pad_to: int = 0, max_tokens: int = 0
) -> dict[str, torch.Tensor]:
    """One row: the shared `prefix` tokens, then each example's remaining tokens.

    Returns `input_ids`, `labels`, `position_ids` (1, L) and `attention_mask` (1, 1, L, L), True
    where a query token (row) may attend to a key token (column). `pad_to` rounds L up to a
    multiple (never past `max_tokens` when given): fewer distinct shapes let the CPU reuse its
    matmul kernels and memory. Padding tokens attend only to themselves and are never learned.
    """
    head = examples[0]
    ids, labels = list(head["input_ids"][:prefix]), list(head["labels"][:prefix])
    positions, segment = list(range(prefix)), [0] * prefix
    for number, example in enumerate(examples, 1):
        tail = example["input_ids"][prefix:]
        ids += tail
        # A conversation's first own token is predicted by no token of its own (nor may it be by
        # the previous conversation's last one); chat templates never learn it anyway.
        labels += [IGNORE_INDEX, *example["labels"][prefix + 1 :]]
        positions += range(prefix, prefix + len(tail))
        segment += [number] * len(tail)
    length = len(ids)
    if pad_to > 1:
        padded = -(-length // pad_to) * pad_to
        if max_tokens:
            padded = max(length, min(padded, max_tokens))
        pad = padded - length
        ids += [ids[-1]] * pad  # any token: nothing attends to padding, and it is not learned
        labels += [IGNORE_INDEX] * pad
        positions += [0] * pad
        segment += [-1] * pad
    seg = torch.tensor(segment)
    causal = torch.ones(len(seg), len(seg), dtype=torch.bool).tril()
    same = seg[:, None] == seg[None, :]
    sees_prefix = (seg[None, :] == 0) & (seg[:, None] > 0)
    padding = (seg[:, None] < 0) | (seg[None, :] < 0)
    mask = causal & (same | sees_prefix) & ~(padding & ~torch.eye(len(seg), dtype=torch.bool))
    return {
        "input_ids": torch.tensor([ids]),
        "labels": torch.tensor([labels]),
        "position_ids": torch.tensor([positions]),
        "attention_mask": mask[None, None],
    }


class PackedCollator:
    """A step's conversations as packed rows under a token budget (see the module docstring).

    The batch carries `rows` (each a model input with labels), `labels` (every row's labels
    side by side, so Trainer counts the step's learned tokens as usual), `real_tokens` (the
    conversations' own token count, each prefix counted once per conversation, as a plain batch
    would count it) and `fingerprints` (a CRC-32 of each conversation's tokens).
    """

    def __init__(self, max_tokens: int, *, share_prefix: bool = True, pad_to_multiple_of: int = 0):
        self.max_tokens = max_tokens
        self.share_prefix = share_prefix
        self.pad_to = pad_to_multiple_of

    def __call__(self, examples: list[dict]) -> dict:
        examples = [
            {"input_ids": list(e["input_ids"]), "labels": list(e["labels"])} for e in examples
        ]
        prefix = shared_prefix_length(examples) if self.share_prefix else 0
        suffixes = [len(e["input_ids"]) - prefix for e in examples]
        rows = []
        for members in plan_rows(suffixes, prefix, self.max_tokens):
            row = pack_row(
                [examples[i] for i in members],
                prefix,
                pad_to=self.pad_to,
                max_tokens=self.max_tokens,
            )
            row[REAL_TOKENS] = sum(len(examples[i]["input_ids"]) for i in members)
            rows.append(row)
        return {
            ROWS: rows,
            "labels": torch.cat([r["labels"] for r in rows], dim=1),
            REAL_TOKENS: sum(len(e["input_ids"]) for e in examples),
            FINGERPRINTS: [_fingerprint(e["input_ids"]) for e in examples],
        }


def _fingerprint(ids: list[int]) -> int:
    return zlib.crc32(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
