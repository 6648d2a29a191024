"""A brand's reply bounds: the length cap measured from its own replies, and its sign-off."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chatbot.brand.profile import BrandProfile, BrandRules
from chatbot.engine import GenerationSettings
from chatbot.engine.reply_length import brand_reply_bounds, reply_lengths
from chatbot.errors import InputError


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _brand(folder: Path, replies: list[str], signoff: str | None = "Shine on, Lumen Lamps") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    BrandProfile("Lumen Lamps", rules=BrandRules(required_signoff=signoff)).save(
        folder / "brand.yaml"
    )
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": r},
            ]
        }
        for i, r in enumerate(replies)
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _replies(n: int, word: str = "lamp") -> list[str]:
    """Replies of 1..n words, in shuffled order."""
    return [" ".join([word] * k) for k in sorted(range(1, n + 1), key=lambda k: (k * 7) % n)]


def test_the_cap_is_one_and_a_half_times_the_95th_percentile(tmp_path: Path, tokenizer) -> None:
    replies = _replies(40)
    folder = _brand(tmp_path / "brand", replies)
    # Counted here one reply at a time, and the percentile taken by its textbook definition.
    counts = sorted(len(tokenizer.encode(r, add_special_tokens=False)) for r in replies)
    p95 = counts[math.ceil(0.95 * len(counts)) - 1]
    bounds = brand_reply_bounds(folder, tokenizer)
    assert bounds.lengths is not None
    assert (bounds.lengths.replies, bounds.lengths.p95_tokens) == (40, p95)
    assert bounds.max_new_tokens == math.ceil(1.5 * p95) + 1  # and one for the end of turn
    assert bounds.signoff == "Shine on, Lumen Lamps"


def test_a_wordier_brand_gets_a_longer_cap(tmp_path: Path, tokenizer) -> None:
    short = reply_lengths(_brand(tmp_path / "short", _replies(30)), tokenizer)
    wordy = reply_lengths(_brand(tmp_path / "wordy", _replies(90)), tokenizer)
    assert short is not None and wordy is not None
    assert wordy.max_new_tokens > 2 * short.max_new_tokens


def test_lengths_are_cached_until_the_data_changes(tmp_path: Path, tokenizer) -> None:
    folder = _brand(tmp_path / "brand", _replies(30))
    first = reply_lengths(folder, tokenizer)
    cache = json.loads((folder / "reply_lengths.json").read_text())
    assert cache["lengths"]["max_new_tokens"] == first.max_new_tokens
    # A cache that no longer matches the data is measured again, never trusted.
    _brand(folder, _replies(80))
    again = reply_lengths(folder, tokenizer)
    assert again.max_new_tokens > first.max_new_tokens
    (folder / "reply_lengths.json").write_text("{broken")
    assert reply_lengths(folder, tokenizer) == again


def test_settings_take_the_brand_bounds_unless_the_user_set_a_length(
    tmp_path: Path, tokenizer
) -> None:
    bounds = brand_reply_bounds(_brand(tmp_path / "brand", _replies(30)), tokenizer)
    settings = bounds.apply(GenerationSettings(temperature=0.2))
    assert (settings.max_new_tokens, settings.signoff) == (bounds.max_new_tokens, bounds.signoff)
    assert settings.temperature == 0.2
    assert bounds.apply(GenerationSettings(), max_new_tokens=333).max_new_tokens == 333


def test_a_brand_without_replies_or_signoff_keeps_the_defaults(tmp_path: Path, tokenizer) -> None:
    bounds = brand_reply_bounds(_brand(tmp_path / "brand", [], signoff=None), tokenizer)
    assert (bounds.max_new_tokens, bounds.signoff) == (None, "")
    assert bounds.apply(GenerationSettings()) == GenerationSettings()


def test_a_damaged_training_file_is_named_with_its_line(tmp_path: Path, tokenizer) -> None:
    folder = _brand(tmp_path / "brand", _replies(3))
    with (folder / "train.jsonl").open("a") as f:
        f.write("{not json}\n")
    with pytest.raises(InputError) as err:
        reply_lengths(folder, tokenizer)
    assert "train.jsonl, line 4" in str(err.value) and "Prepare the brand again" in str(err.value)
