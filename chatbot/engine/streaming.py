"""Tokens to text while `generate` runs: a batch streamer, per-row incremental decoding, stopping.

`generate` runs in a background thread and hands each step's new tokens, one per batch row, to
`TokenQueueStreamer.put`. The streamer only copies the ids into a queue, so the decoding loop does
no tokenizer work between forward passes; the consuming thread turns ids into text with one
`IncrementalDecoder` per row. `StopFlag` is the consumer's way back: setting it ends `generate`
after the current step (and, through `on_set`, takes a request still waiting out of line).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

__all__ = ["IncrementalDecoder", "StopFlag", "TokenQueueStreamer"]

# A lone continuation byte of a multi-byte UTF-8 character decodes to U+FFFD until the rest arrives.
_INCOMPLETE = "\ufffd"


class IncrementalDecoder:
    """Decodes one row of generated ids into text deltas, never splitting a character.

    The scheme of text-generation-inference's `decode_token`: decode a short window of tokens ending
    at the newest one and emit only what the newest tokens added beyond the window's earlier part.
    Decoding a window (not each token alone) keeps the spaces that SentencePiece-style tokenizers
    attach to a token's start, and holding text back while it ends in U+FFFD waits for the
    remaining bytes of a character spread over several byte-level tokens. Each step decodes a few
    tokens, so a long reply costs linear time, not quadratic.
    """

    def __init__(self, tokenizer: Any, stop_ids: Iterable[int]) -> None:
        self._tokenizer = tokenizer
        self._stop_ids = frozenset(stop_ids)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self.finished = False
        """True once the row produced a stop token; later ids (padding) are ignored."""

    def push(self, token_id: int) -> str:
        """Add one generated id; return the text it completes (often "", never half a character)."""
        if self.finished:
            return ""
        if token_id in self._stop_ids:
            self.finished = True
            return ""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._decode(self._ids[self._prefix_offset :])
        if len(text) > len(prefix) and not text.endswith(_INCOMPLETE):
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """The text still held back when the row ends (bytes that never formed a character)."""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return text[len(prefix) :] if len(text) > len(prefix) else ""

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return self._tokenizer.decode(ids, skip_special_tokens=True)


class TokenQueueStreamer(BaseStreamer):
    """Receives each step's new ids from `generate` and queues them for the consumer as lists.

    `generate` first puts the prompt (a 2-D tensor), which is skipped; then one 1-D tensor of shape
    (batch,) per step. `rows` maps the batch rows of this `generate` call to the caller's row
    numbers, so several calls (the sequential fallback) can feed one consumer.
    """

    def __init__(self, out: queue.Queue, rows: list[int]) -> None:
        self._out = out
        self._rows = rows
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        self._out.put(list(zip(self._rows, ids, strict=True)))

    def end(self) -> None:
        """Nothing to flush: the consumer learns that generation ended from the job itself."""


class StopFlag(StoppingCriteria):
    """Tells `generate` to stop every row once `set()` has been called from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the flag is set (at once if it already is)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        # One Python attribute read per step; the tensor is what the criteria protocol expects.
        done = self._event.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)
