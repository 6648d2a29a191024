"""Votes: stored with every field, read back intact, counted per system."""

from __future__ import annotations

import pytest

from chatbot.errors import BrandVoiceError
from chatbot.feedback.votes import Vote, list_votes, record_vote, tally
from chatbot.workspace import Workspace


def _vote(**overrides) -> Vote:
    fields = {
        "brand": "lumen-lamps",
        "mode": "blind",
        "prompt": "My shade arrived dented.",
        "left_system": "tuned",
        "right_system": "prompted",
        "left_reply": "Hello there, a new shade leaves tomorrow. Shine on, Lumen Lamps",
        "right_reply": "Unfortunately, damage happens.",
        "verdict": "left",
        "run_id": "20250101-000000-abcdef",
        "adapter": "/ws/runs/20250101-000000-abcdef/adapter",
        "settings": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 128, "seed": 7},
        "history": {"left": [], "right": []},
    }
    return Vote(**(fields | overrides))


def test_vote_round_trips_every_field(tmp_path):
    ws = Workspace.open(tmp_path)
    saved = record_vote(ws, _vote())
    assert saved.id is not None and saved.created > 0
    [back] = list_votes(ws)
    assert back == saved
    assert back.settings["seed"] == 7 and back.adapter.endswith("/adapter")
    assert back.winner == "tuned"


def test_votes_filter_by_brand_and_run(tmp_path):
    ws = Workspace.open(tmp_path)
    record_vote(ws, _vote())
    record_vote(ws, _vote(brand="other"))
    record_vote(ws, _vote(run_id="another-run"))
    assert len(list_votes(ws, "lumen-lamps")) == 2
    assert len(list_votes(ws, "lumen-lamps", "another-run")) == 1
    assert len(list_votes(ws)) == 3


def test_old_votes_table_gains_new_columns(tmp_path):
    ws = Workspace.open(tmp_path)
    with ws.db() as con:  # a row written before the adapter/history columns existed
        con.execute(
            "INSERT INTO votes (created, brand, run_id, mode, prompt, left_system, right_system,"
            " left_reply, right_reply, verdict) VALUES (1, 'b', 'r', 'base_vs_tuned', 'hi',"
            " 'base', 'tuned', 'a', 'b', 'tie')"
        )
    [old] = list_votes(ws)
    assert old.adapter == "" and old.history == {} and old.settings == {}


def test_bad_votes_are_refused(tmp_path):
    with pytest.raises(BrandVoiceError, match="verdict"):
        _vote(verdict="maybe")
    with pytest.raises(BrandVoiceError, match="prompt"):
        _vote(prompt="  ")


def test_tally_counts_per_system():
    votes = [
        _vote(verdict="left"),  # tuned beats prompted
        _vote(verdict="right"),  # prompted beats tuned
        _vote(verdict="left", left_system="base", right_system="tuned"),  # base beats tuned
        _vote(verdict="tie"),
        _vote(verdict="both_bad"),
    ]
    t = tally(votes)
    assert (t["tuned"].wins, t["tuned"].losses, t["tuned"].ties, t["tuned"].both_bad) == (
        1,
        2,
        1,
        1,
    )
    assert t["tuned"].total == 5
    assert (t["prompted"].wins, t["prompted"].losses) == (1, 1)
    assert t["base"].wins == 1


def test_votes_are_stored_with_personal_data_redacted(tmp_path):
    ws = Workspace.open(tmp_path)
    earlier = [
        {"role": "user", "content": "I am jo@example.com"},
        {"role": "assistant", "content": "Hi!"},
    ]
    vote = _vote(
        prompt="Call me on +44 7700 900123 or mail jo@example.com",
        left_reply="Sure, I will mail jo@example.com today.",
        history={"left": earlier, "right": earlier},
    )
    record_vote(ws, vote)
    [back] = list_votes(ws)
    assert back.prompt == "Call me on <PHONE> or mail <EMAIL>"
    assert back.left_reply == "Sure, I will mail <EMAIL> today."
    assert back.history["left"][0]["content"] == "I am <EMAIL>"
    with ws.db() as con:
        stored = " ".join(str(v) for row in con.execute("SELECT * FROM votes") for v in row)
    assert "jo@example.com" not in stored and "7700" not in stored


def test_a_vote_that_cannot_be_checked_is_not_stored(tmp_path, monkeypatch):
    from chatbot.prepare import privacy

    ws = Workspace.open(tmp_path)
    monkeypatch.setattr(privacy, "MAX_TEXT_CHARS", 10)
    with pytest.raises(privacy.RedactionError, match="could not check for personal data"):
        record_vote(ws, _vote(prompt="a long prompt with jo@example.com in it"))
    assert list_votes(ws) == []
