"""Tokens to text while `generate` runs: a batch streamer, per-row incremental decoding, stopping.

`generate` runs in a background thread and hands each step's new tokens, one per batch row, to
`TokenQueueStreamer.put`. The streamer only copies the ids into a queue, so the decoding loop does
no tokenizer work between forward passes; the consuming thread turns ids into text with one
`IncrementalDecoder` per row. `StopFlag` is the consumer's way back: setting it ends `generate`
after the current step, for every row or for one (and, through `on_set`, takes a job still
waiting for the model out of line). `SignoffEnd` ends a row's text after the line that holds the
brand's sign-off.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

__all__ = ["IncrementalDecoder", "SignoffEnd", "StopFlag", "TokenQueueStreamer"]

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


class StopFlag:
    """Which rows of a job to stop; set from any thread, read by `generate` at every step.

    `set()` stops every row (the reader went away, or the caller stopped the whole job);
    `set(row)` stops one row (a Stop button under one pane, or a row that wrote the brand's
    sign-off) while the others go on. Rows are the caller's: 0 is the first prompt of the job.
    """

    def __init__(self) -> None:
        self._all = False
        self._rows: set[int] = set()
        self._lock = threading.Lock()
        self._on_stop: list[Callable[[], None]] = []

    def set(self, row: int | None = None) -> None:
        # A bool and a set member: each assignment is atomic under the GIL; the lock only keeps
        # a callback registered while the whole job is being stopped from being missed.
        if row is not None:
            self._rows.add(row)
            return
        with self._lock:
            self._all = True
            callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the whole job is stopped (at once if it already is)."""
        with self._lock:
            if not self._all:
                self._on_stop.append(callback)
                return
        callback()

    def is_set(self, row: int | None = None) -> bool:
        """Whether `row` was stopped; without a row, whether the whole job was."""
        return self._all or (row is not None and row in self._rows)

    def criteria(self, rows: Sequence[int]) -> StoppingCriteria:
        """The criterion for one `generate` call whose batch rows are the caller's `rows`."""
        return _RowsStopped(self, list(rows))


class _RowsStopped(StoppingCriteria):
    def __init__(self, flag: StopFlag, rows: list[int]) -> None:
        self._flag = flag
        self._rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        # A few Python reads per step; `generate` pads a stopped row from then on and ends when
        # every row has stopped.
        done = [self._flag.is_set(row) for row in self._rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class SignoffEnd:
    """Ends one row's text with the line in which it writes the sign-off.

    The sign-off's words must appear in order, case-insensitively, with anything but letters and
    digits between them (as `chatbot.brand.rule_check` reads a sign-off): "Steep well — the
    Kettlebird flock" matches "Steep well, the Kettlebird flock". Whatever follows on the same line
    (an emoji, a full stop) is kept; the reply ends at the next line break.
    """

    def __init__(self, signoff: str) -> None:
        words = re.findall(r"\w+", signoff)
        self._pattern = (
            re.compile(r"(?<!\w)" + r"[\W_]+".join(map(re.escape, words)) + r"(?!\w)", re.I)
            if words
            else None
        )
        # A match can only end in text added since the last look, so each look re-reads only
        # the tail that could hold the start of one: linear in the reply, not quadratic.
        self._window = len(signoff) * 4 + 16
        self._text = ""
        self._signed_at: int | None = None
        """Where the line holding the sign-off continues (the end of the match), once written."""
        self.finished = False

    def feed(self, delta: str) -> str:
        """The part of `delta` the reply keeps; sets `finished` once the sign-off's line ended."""
        if self.finished or self._pattern is None or not delta:
            return "" if self.finished else delta
        start = len(self._text)
        self._text += delta
        if self._signed_at is None:
            match = self._pattern.search(self._text, max(0, start - self._window))
            if match is None:
                return delta
            self._signed_at = match.end()
        line_end = self._text.find("\n", self._signed_at)
        if line_end < 0:
            return delta
        self.finished = True
        return self._text[start:line_end] if line_end > start else ""
