"""Finding emoji in text, as a reader sees them (one per rendered symbol)."""

from __future__ import annotations

import re

__all__ = ["emoji_key", "emoji_spans", "find_emoji"]

# A hand-made emoji pattern rather than the `emoji` package or `regex`'s \p{Extended_Pictographic}:
# neither is a dependency, and counting emoji in a reply only needs the code points that render as
# emoji. Characters whose default look is an emoji count on their own; text-style symbols (©, ™,
# ✓, arrows) count only with the emoji variation selector U+FE0F, except a few that platforms draw
# as emoji anyway (❤, ☺, ✌, ...). Skin tones, ZWJ sequences (👩‍💻), flags and keycaps are one emoji.
_EMOJI_DEFAULT = (
    "\U0001f000-\U0001f0ff\U0001f16d-\U0001f171\U0001f17e\U0001f17f\U0001f18e"
    "\U0001f191-\U0001f19a\U0001f1e6-\U0001f1ff\U0001f201-\U0001f3fa\U0001f400-\U0001faff"
    "\u231a\u231b\u23e9-\u23ec\u23f0\u23f3\u25fd\u25fe\u2614\u2615\u2648-\u2653\u267f\u2693"
    "\u26a1\u26aa\u26ab\u26bd\u26be\u26c4\u26c5\u26ce\u26d4\u26ea\u26f2\u26f3\u26f5\u26fa\u26fd"
    "\u2705\u270a\u270b\u2728\u274c\u274e\u2753-\u2755\u2757\u2795-\u2797\u27b0\u27bf\u2b1b"
    "\u2b1c\u2b50\u2b55"
    "\u2600\u2601\u2639\u263a\u2665\u2708\u270c\u2764"
)
_TEXT_DEFAULT = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u2300-\u23ff\u24c2"
    "\u25aa-\u25fe\u2600-\u27bf\u2934\u2935\u2b05-\u2b55\u3030\u303d\u3297\u3299"
)
_MODIFIER = "[\U0001f3fb-\U0001f3ff]"
_ONE = f"(?:[{_EMOJI_DEFAULT}]\ufe0f?|[{_TEXT_DEFAULT}]\ufe0f)"
_JOINED = f"(?:[{_EMOJI_DEFAULT}{_TEXT_DEFAULT}]\ufe0f?)"
_EMOJI_RE = re.compile(
    "[\U0001f1e6-\U0001f1ff]{2}"  # a flag: two regional indicators
    "|[0-9#*]\ufe0f?\u20e3"  # a keycap
    f"|{_ONE}{_MODIFIER}?[\U000e0020-\U000e007f]*(?:\u200d{_JOINED}{_MODIFIER}?)*"
)


def find_emoji(text: str) -> list[str]:
    """Every emoji in `text`, in order, each a whole cluster (👍🏽, 🇬🇧, 👩‍💻 count as one)."""
    return _EMOJI_RE.findall(text)


def emoji_spans(text: str) -> list[tuple[int, int]]:
    """Where each emoji of `find_emoji` sits in `text`: (start, end) character offsets."""
    return [match.span() for match in _EMOJI_RE.finditer(text)]


def emoji_key(emoji: str) -> str:
    # 🍵 and 🍵 + U+FE0F are the same emoji to a reader.
    return emoji.replace("\ufe0f", "")
