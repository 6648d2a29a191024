"""How many conversations a brand needs: one piece of advice, worded in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.cli import main
from chatbot.prepare import prepare
from chatbot.types import Conversation, Turn
from chatbot.validation import (
    FIRST_TASTE_CONVERSATIONS,
    MIN_CONVERSATIONS,
    RECOMMENDED_CONVERSATIONS,
    data_size_advice,
    validate,
)
from chatbot.workspace import Workspace

ASSETS = Path(__file__).parent / "assets" / "brand"


def test_the_thresholds_are_in_order() -> None:
    assert MIN_CONVERSATIONS < FIRST_TASTE_CONVERSATIONS < RECOMMENDED_CONVERSATIONS


@pytest.mark.parametrize(
    ("n", "says"),
    [
        (0, "Only 0 conversations: at least 10 are needed to train"),
        (1, "Only 1 conversation: at least 10"),
        (9, "Only 9 conversations: at least 10"),
        (10, "10 conversations: enough to train, but the voice will be learned only roughly"),
        (49, "49 conversations: enough to train, but"),
        (50, "50 conversations: enough for a first taste of the voice"),
        (58, "58 conversations: enough for a first taste of the voice"),
        (299, "299 conversations: enough for a first taste"),
    ],
)
def test_advice_by_size(n: int, says: str) -> None:
    advice = data_size_advice(n)
    assert advice is not None and advice.startswith(says)
    assert "a few hundred (300 or more) are recommended" in advice


def test_plenty_needs_no_advice() -> None:
    assert data_size_advice(RECOMMENDED_CONVERSATIONS) is None
    assert data_size_advice(5000) is None


def test_a_lower_minimum_from_the_prepare_settings() -> None:
    assert data_size_advice(5, minimum=3).startswith("5 conversations: enough to train")


def _many(n: int) -> list[Conversation]:
    return [
        Conversation([Turn("user", f"Where is order {i}?"), Turn("assistant", f"It ships, {i}.")])
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [9, 58])
def test_validation_words_its_finding_with_the_advice(n: int) -> None:
    report = validate(_many(n))
    findings = [f for f in [*report.errors, *report.warnings] if f.code in ("too_few", "few")]
    assert [f.message for f in findings] == [data_size_advice(n)]


def test_the_prepare_report_and_the_cli_give_it_once(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    ws = Workspace.open(tmp_path / "ws")
    result = prepare(ws, "Lumen Lamps", [ASSETS / "conversations.jsonl"])
    assert result.data_size_advice == data_size_advice(14)
    assert result.to_dict()["data_size_advice"] == data_size_advice(14)
    code = main(
        [
            "prepare",
            "--workspace",
            str(tmp_path / "cli"),
            "--brand",
            "Lumen Lamps",
            "--conversations",
            str(ASSETS / "conversations.jsonl"),
            "--no-tokens",
        ]
    )
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert out.count("enough to train, but the voice will be learned only roughly") == 1
