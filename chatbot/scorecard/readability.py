"""How long and how easy to read each system's replies are, next to the brand's own replies.

Length is counted in words (whitespace-separated, what a reader sees); readability is the Flesch
reading ease, 206.835 - 1.015 x words per sentence - 84.6 x syllables per word, as textstat
computes it for English, with textstat's word and sentence counts. Syllables come from Pyphen's
en_US hyphenation dictionary, which textstat itself falls back to: textstat 0.7 looks English words
up in NLTK's CMU dictionary first and downloads that on first use, and a scorecard must neither
reach the network nor score differently on a machine that happens to have it. An empty reply has
a length of 0 and no readability score.
"""

from __future__ import annotations

import re
import statistics
from functools import lru_cache
from typing import Any

from chatbot.scorecard.card import TextStats

__all__ = ["word_count", "syllables", "flesch", "text_stats", "percentile"]

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@lru_cache(maxsize=1)
def _pyphen() -> Any:
    from pyphen import Pyphen

    return Pyphen(lang="en_US")


def word_count(text: str) -> int:
    return len(text.split())


def syllables(text: str) -> int:
    """Syllables of `text`: one more than each word's hyphenation points."""
    words = _WORD_RE.findall(text.lower().replace("\u2019", "'"))
    return sum(len(_pyphen().positions(word)) + 1 for word in words)


def flesch(text: str) -> float | None:
    """Flesch reading ease of `text` (None for a text without words)."""
    import textstat

    words = textstat.lexicon_count(text)
    if not words:
        return None
    per_sentence = words / max(textstat.sentence_count(text), 1)
    return 206.835 - 1.015 * per_sentence - 84.6 * syllables(text) / words


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile (0-100) with linear interpolation, as numpy's default computes it."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def text_stats(replies: list[str]) -> TextStats:
    """Word-count distribution and Flesch reading ease of `replies`."""
    words = [float(word_count(r)) for r in replies]
    scores = [s for s in (flesch(r) for r in replies) if s is not None]
    return TextStats(
        replies=len(replies),
        words_mean=statistics.fmean(words) if words else 0.0,
        words_median=statistics.median(words) if words else 0.0,
        words_p10=percentile(words, 10),
        words_p90=percentile(words, 90),
        flesch_mean=statistics.fmean(scores) if scores else None,
        flesch_median=statistics.median(scores) if scores else None,
    )
