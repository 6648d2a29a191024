"""A transcript between the customer and one other named speaker: that speaker is the brand."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.ingest import read_conversations

MAPLE = """Customer: Do you deliver on Sundays?
Maple Bakery: We do, before noon.
Tip: order by Friday so the loaves are fresh.
Customer: Great, thanks.
Maple Bakery: Enjoy the bread!
---
Customer: Is the rye vegan?
Maple Bakery: Yes, no milk or eggs in it.
"""


def _messages(path: Path, **options: object) -> list[list[tuple[str, str]]]:
    result = read_conversations(path, **options)
    assert result.format == "transcript" and result.findings == []
    return [[(t.role, t.content) for t in c.turns] for c in result.conversations]


@pytest.mark.parametrize("brand_names", [[], ["Kettlebird"], ["Maple"]])
def test_the_other_speaker_is_the_brand_whatever_it_was_named(
    tmp_path: Path, brand_names: list[str]
) -> None:
    path = tmp_path / "chats.txt"
    path.write_text(MAPLE, encoding="utf-8")
    first, second = _messages(path, brand_names=brand_names)
    assert first == [
        ("user", "Do you deliver on Sundays?"),
        # The "Tip:" line is not a speaker: it starts one line, the customer starts three.
        ("assistant", "We do, before noon.\nTip: order by Friday so the loaves are fresh."),
        ("user", "Great, thanks."),
        ("assistant", "Enjoy the bread!"),
    ]
    assert second == [("user", "Is the rye vegan?"), ("assistant", "Yes, no milk or eggs in it.")]


def test_a_first_name_as_the_brand_speaker(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_text("Customer: hi, where is my order?\nJo: It left this morning.\n")
    assert _messages(path, brand_names=["Kettlebird"]) == [
        [("user", "hi, where is my order?"), ("assistant", "It left this morning.")]
    ]


def test_a_known_assistant_label_keeps_other_names_text(tmp_path: Path) -> None:
    """Customer and Agent speak: a "Jo:" line is part of the Agent's turn, not the brand."""
    path = tmp_path / "chat.txt"
    path.write_text("Customer: hi\nAgent: hello\nJo: and me\n\nCustomer: hi\nAgent: yes\n")
    first, _ = _messages(path)
    assert first == [("user", "hi"), ("assistant", "hello\nJo: and me")]


def test_two_other_speakers_are_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_text("Customer: hi\nJo: hello\n\nCustomer: hi\nSam: hey\n")
    result = read_conversations(path)
    assert result.conversations == []
    assert [f.location for f in result.findings] == ["line 1", "line 4"]
    assert all("no assistant reply" in str(f) for f in result.findings)
