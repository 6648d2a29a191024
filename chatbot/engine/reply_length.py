"""How long a brand's replies may run: a cap taken from its own replies, and its sign-off.

A chat reply is bounded the way the brand writes: at most `REPLY_CAP_FACTOR` times the 95th
percentile of its assistant replies in `train.jsonl` (counted in the chat model's tokens, plus one
for the end-of-turn token), and it ends with the line that holds the brand's sign-off. The base,
prompted and tuned sides get the same bounds, so a comparison is fair; a length the user sets
overrides the cap.

The cap is computed once per prepared dataset and tokenizer and kept next to the data
(`reply_lengths.json`, keyed by the file's hash and the tokenizer); preparing the brand again
rebuilds the folder, and with it the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from chatbot.brand.profile import BrandProfile
from chatbot.engine.settings import GenerationSettings
from chatbot.errors import InputError
from chatbot.storage import atomic_write_json

__all__ = [
    "REPLY_CAP_FACTOR",
    "REPLY_CAP_PERCENTILE",
    "ReplyBounds",
    "ReplyLengths",
    "brand_reply_bounds",
    "reply_lengths",
]

REPLY_CAP_FACTOR = 1.5
REPLY_CAP_PERCENTILE = 95
# A brand of one-word replies must still leave room for a short sentence.
_MIN_CAP = 16
_MAX_CAP = 4096  # GenerationSettings' own limit
_CACHE_NAME = "reply_lengths.json"


@dataclass(frozen=True)
class ReplyLengths:
    """The lengths of a brand's training replies, in one tokenizer's tokens."""

    replies: int
    """How many assistant replies were measured."""
    p95_tokens: int
    """95% of the replies are this many tokens or fewer."""
    max_new_tokens: int
    """The default cap on a chat reply: `REPLY_CAP_FACTOR` × `p95_tokens`, plus end-of-turn."""


@dataclass(frozen=True)
class ReplyBounds:
    """What bounds a brand's chat replies by default; `apply` puts it into generation settings."""

    max_new_tokens: int | None
    """The cap from the brand's own replies; None when it has none to measure."""
    signoff: str = ""
    """The brand's sign-off (brand.yaml `rules.required_signoff`); "" when it has none."""
    lengths: ReplyLengths | None = None

    def apply(
        self, settings: GenerationSettings, *, max_new_tokens: int | None = None
    ) -> GenerationSettings:
        """`settings` with the brand's cap and sign-off; a `max_new_tokens` given wins."""
        cap = max_new_tokens or self.max_new_tokens or settings.max_new_tokens
        return replace(settings, max_new_tokens=cap, signoff=self.signoff)


def brand_reply_bounds(brand_dir: Path, tokenizer: Any) -> ReplyBounds:
    """The reply bounds of the prepared brand in `brand_dir`, counted with `tokenizer`."""
    profile = BrandProfile.load(brand_dir / "brand.yaml")
    lengths = reply_lengths(brand_dir, tokenizer)
    return ReplyBounds(
        max_new_tokens=lengths.max_new_tokens if lengths else None,
        signoff=profile.rules.required_signoff or "",
        lengths=lengths,
    )


def reply_lengths(brand_dir: Path, tokenizer: Any) -> ReplyLengths | None:
    """Measure the brand's training replies (cached); None when `train.jsonl` holds none."""
    train = brand_dir / "train.jsonl"
    try:
        data = train.read_bytes()
    except OSError as exc:
        raise InputError(
            f"Cannot read the brand's training data: {exc}. Prepare the brand again.",
            file=str(train),
        ) from exc
    key = {"train_sha256": hashlib.sha256(data).hexdigest(), "tokenizer": _tokenizer_id(tokenizer)}
    cache = brand_dir / _CACHE_NAME
    cached = _read_cache(cache, key)
    if cached is not None:
        return cached
    lengths = _measure(_replies(train, data), tokenizer)
    if lengths is not None:
        # A read-only or just-replaced brand folder keeps no cache: measured again next time.
        with contextlib.suppress(OSError):
            atomic_write_json(cache, key | {"lengths": asdict(lengths)})
    return lengths


def _measure(replies: list[str], tokenizer: Any) -> ReplyLengths | None:
    if not replies:
        return None
    counts = sorted(len(ids) for ids in tokenizer(replies, add_special_tokens=False)["input_ids"])
    # Nearest-rank percentile: a length some reply really has.
    p95 = counts[max(0, math.ceil(REPLY_CAP_PERCENTILE / 100 * len(counts)) - 1)]
    cap = min(max(math.ceil(REPLY_CAP_FACTOR * p95) + 1, _MIN_CAP), _MAX_CAP)
    return ReplyLengths(replies=len(counts), p95_tokens=p95, max_new_tokens=cap)


def _replies(train: Path, data: bytes) -> list[str]:
    """Every assistant message of train.jsonl (the chat `messages` format prepare writes)."""
    replies = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(
                f"Line {number} is not a conversation in the chat `messages` format ({exc}). "
                "Prepare the brand again to rewrite the file.",
                file=str(train),
                location=f"line {number}",
            ) from exc
        replies += [_reply_text(m) for m in messages if _reply_text(m)]
    return replies


def _reply_text(message: object) -> str:
    if isinstance(message, dict) and message.get("role") == "assistant":
        content = message.get("content")
        return content if isinstance(content, str) else ""
    return ""


def _tokenizer_id(tokenizer: Any) -> str:
    return f"{type(tokenizer).__name__}:{getattr(tokenizer, 'name_or_path', '')}:{len(tokenizer)}"


def _read_cache(path: Path, key: dict[str, str]) -> ReplyLengths | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in key} != key:
            return None
        return ReplyLengths(**saved["lengths"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, stale or damaged: measure again
