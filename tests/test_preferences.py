"""Votes as TRL preference data: DPO pairs and KTO labels that match the votes, PII redacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_support import make_brand

from chatbot.cli.commands import main
from chatbot.errors import BrandVoiceError
from chatbot.feedback.preferences import export_votes
from chatbot.feedback.votes import Vote, record_vote
from chatbot.workspace import Workspace

SHARED = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def _vote(verdict: str, prompt: str, left: str, right: str, **extra: object) -> Vote:
    return Vote(
        brand="lumen-lamps",
        mode="base_vs_tuned",
        prompt=prompt,
        left_system="base",
        right_system="tuned",
        left_reply=left,
        right_reply=right,
        verdict=verdict,  # type: ignore[arg-type]
        run_id="run-1",
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.open(tmp_path / "ws")
    make_brand(ws)
    differing = {"left": [*SHARED[:1], {"role": "assistant", "content": "Hey."}], "right": SHARED}
    for vote in (
        _vote("right", "Where is my lamp?", "Dunno.", "It ships Monday!"),
        _vote("left", "Mail me at jo@example.com", "Will do, jo.", "No.", history={}),
        _vote("tie", "Thanks", "You're welcome.", "Any time!"),
        _vote("both_bad", "Refund?", "No.", "Maybe."),
        _vote(
            "right",
            "And the shade?",
            "?",
            "Also Monday.",
            history={"left": SHARED, "right": SHARED},
        ),
        _vote("left", "Colour?", "Blue.", "Red.", history=differing),
    ):
        record_vote(ws, vote)
    # Votes are redacted when stored; a vote stored before that still holds the address, and
    # the export redacts it too.
    with ws.db() as con:
        con.execute(
            "UPDATE votes SET prompt = 'Mail me at jo@example.com' "
            "WHERE prompt = 'Mail me at <EMAIL>'"
        )
    return ws


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_dpo_pairs_match_the_votes(ws: Workspace, tmp_path: Path):
    from trl.data_utils import is_conversational

    result = export_votes(ws, "Lumen Lamps", tmp_path / "dpo.jsonl", "dpo")
    rows = _rows(result.path)
    assert rows == [
        {
            "prompt": _user("Where is my lamp?"),
            "chosen": _assistant("It ships Monday!"),
            "rejected": _assistant("Dunno."),
        },
        {
            "prompt": _user("Mail me at <EMAIL>"),
            "chosen": _assistant("Will do, jo."),
            "rejected": _assistant("No."),
        },
        {
            "prompt": [*SHARED, *_user("And the shade?")],
            "chosen": _assistant("Also Monday."),
            "rejected": _assistant("?"),
        },
    ]
    assert all(is_conversational(row) for row in rows)
    assert (result.rows, result.votes) == (3, 6)
    assert result.skipped == {"tie": 1, "both_bad": 1, "different earlier replies": 1}
    assert result.redacted == {"EMAIL": 1}


def test_kto_labels_match_the_votes(ws: Workspace, tmp_path: Path):
    result = export_votes(ws, "Lumen Lamps", tmp_path / "kto.jsonl", "kto", run_id="run-1")
    rows = [
        (r["prompt"][-1]["content"], r["completion"][0]["content"], r["label"])
        for r in _rows(result.path)
    ]
    assert rows == [
        ("Where is my lamp?", "Dunno.", False),
        ("Where is my lamp?", "It ships Monday!", True),
        ("Mail me at <EMAIL>", "Will do, jo.", True),
        ("Mail me at <EMAIL>", "No.", False),
        ("Refund?", "No.", False),
        ("Refund?", "Maybe.", False),
        ("And the shade?", "?", False),
        ("And the shade?", "Also Monday.", True),
        ("Colour?", "Blue.", True),
        ("Colour?", "Red.", False),
    ]
    colour = _rows(result.path)[-2:]
    assert (
        colour[0]["prompt"][1]["content"] == "Hey."
        and colour[1]["prompt"][1]["content"] == "Hello!"
    )
    assert result.skipped == {"tie": 1}


def test_standard_format_uses_strings_and_one_turn_votes(ws: Workspace, tmp_path: Path, capsys):
    argv = ["export-votes", "--workspace", str(ws.root), "--brand", "Lumen Lamps"]
    out = tmp_path / "dpo.jsonl"
    assert main([*argv, "--out", str(out), "--style", "standard"]) == 0
    assert _rows(out) == [
        {"prompt": "Where is my lamp?", "chosen": "It ships Monday!", "rejected": "Dunno."},
        {"prompt": "Mail me at <EMAIL>", "chosen": "Will do, jo.", "rejected": "No."},
    ]
    printed = capsys.readouterr().out
    assert "Wrote 2 DPO rows (6 votes)" in printed and "1 EMAIL" in printed


def test_no_votes_no_file(tmp_path: Path):
    ws = Workspace.open(tmp_path / "ws")
    make_brand(ws)
    with pytest.raises(BrandVoiceError, match="no votes"):
        export_votes(ws, "Lumen Lamps", tmp_path / "x.jsonl")
    with pytest.raises(BrandVoiceError, match="Unknown preference format"):
        export_votes(ws, "Lumen Lamps", tmp_path / "x.jsonl", "orpo")
    assert not (tmp_path / "x.jsonl").exists()
