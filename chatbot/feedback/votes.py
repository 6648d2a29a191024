"""Side-by-side votes: what a person preferred when two systems answered the same prompt.

A vote keeps everything needed to read it later without the session that produced it: the prompt
and the earlier turns, both replies, which system spoke on which side (so blind votes can be
un-blinded), the run and adapter folder of the tuned side, and the generation settings. Rows live
in the workspace database's `votes` table; this module adds the columns it needs to older files.

What a person typed into Compare may hold personal data, and so may the replies that echo it: the
prompt, both replies and the earlier turns are redacted with the brand's redactor before they are
stored. A vote whose texts could not be checked is refused (`RedactionError`), never stored as is.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, get_args

from chatbot.errors import BrandVoiceError
from chatbot.workspace import Workspace

__all__ = ["Verdict", "VERDICTS", "Vote", "record_vote", "list_votes", "tally", "SystemTally"]

Verdict = Literal["left", "right", "tie", "both_bad"]
VERDICTS: tuple[str, ...] = get_args(Verdict)

# Columns added after the first schema. ALTER TABLE ... ADD COLUMN is idempotent here because we
# look first; old rows read back with the defaults.
_EXTRA_COLUMNS = {
    "adapter": "TEXT NOT NULL DEFAULT ''",
    "history": "TEXT NOT NULL DEFAULT '{}'",
}


@dataclass(frozen=True)
class Vote:
    """One verdict on one pair of replies."""

    brand: str
    """The brand's slug."""
    mode: str
    """How the pair was chosen: "base_vs_tuned", "prompted_vs_tuned" or "blind"."""
    prompt: str
    """The user message both sides answered."""
    left_system: str
    """Which system answered on the left: "base", "prompted" or "tuned"."""
    right_system: str
    left_reply: str
    right_reply: str
    verdict: Verdict
    run_id: str | None = None
    """The training run whose adapter played "tuned" (None when neither side was tuned)."""
    adapter: str = ""
    """The adapter folder that was loaded, as a path string."""
    settings: dict = field(default_factory=dict)
    """Generation settings both sides used (temperature, top_p, max_new_tokens, seed, ...)."""
    history: dict = field(default_factory=dict)
    """Earlier turns of the conversation on each side: {"left": [...], "right": [...]}."""
    id: int | None = None
    created: float = 0.0

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise BrandVoiceError(
                f"Unknown verdict {self.verdict!r}; use one of {', '.join(VERDICTS)}."
            )
        if not self.prompt.strip():
            raise BrandVoiceError("A vote needs the prompt both sides answered; it is empty.")

    @property
    def winner(self) -> str | None:
        """The preferred system, or None for a tie or when both were bad."""
        return {"left": self.left_system, "right": self.right_system}.get(self.verdict)


def _ensure_columns(ws: Workspace) -> None:
    with ws.db() as con:
        have = {row["name"] for row in con.execute("PRAGMA table_info(votes)")}
        for name, decl in _EXTRA_COLUMNS.items():
            if name not in have:
                try:
                    con.execute(f"ALTER TABLE votes ADD COLUMN {name} {decl}")
                except sqlite3.OperationalError as exc:
                    # Another process added it between our look and our change: that is fine.
                    if "duplicate column" not in str(exc):
                        raise


def record_vote(ws: Workspace, vote: Vote) -> Vote:
    """Store a vote, its texts redacted; returns what was stored, with its id and time."""
    vote = _redacted(ws, vote)
    _ensure_columns(ws)
    created = vote.created or time.time()
    row = asdict(vote) | {"created": created}
    row["settings"] = json.dumps(vote.settings, ensure_ascii=False, sort_keys=True)
    row["history"] = json.dumps(vote.history, ensure_ascii=False)
    del row["id"]
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with ws.db() as con:
        cur = con.execute(f"INSERT INTO votes ({cols}) VALUES ({marks})", tuple(row.values()))
        vote_id = cur.lastrowid
    return Vote(**(asdict(vote) | {"id": vote_id, "created": created}))


def _redacted(ws: Workspace, vote: Vote) -> Vote:
    """The vote with personal data in its prompt, replies and history replaced by placeholders."""
    from chatbot.feedback.preferences import (
        brand_redactor,  # it reads votes: imported here, not above
    )

    redactor = brand_redactor(ws, vote.brand)

    def clean(text: str) -> str:
        return redactor.redact_text(text)[0]

    history = {
        side: [
            {**turn, "content": clean(turn["content"])}
            if isinstance(turn, dict) and isinstance(turn.get("content"), str)
            else turn
            for turn in turns
        ]
        if isinstance(turns, list)
        else turns
        for side, turns in vote.history.items()
    }
    return replace(
        vote,
        prompt=clean(vote.prompt),
        left_reply=clean(vote.left_reply),
        right_reply=clean(vote.right_reply),
        history=history,
    )


def list_votes(ws: Workspace, brand: str | None = None, run_id: str | None = None) -> list[Vote]:
    """Votes, oldest first, optionally for one brand and/or one run."""
    _ensure_columns(ws)
    with ws.db() as con:
        rows = con.execute(
            "SELECT * FROM votes WHERE (? IS NULL OR brand = ?) AND (? IS NULL OR run_id = ?) "
            "ORDER BY id",
            (brand, brand, run_id, run_id),
        ).fetchall()
    votes = []
    for row in rows:
        d = dict(row)
        d["settings"] = json.loads(d["settings"] or "{}")
        d["history"] = json.loads(d["history"] or "{}")
        votes.append(Vote(**d))
    return votes


@dataclass
class SystemTally:
    """How one system fared across votes it took part in."""

    wins: int = 0
    losses: int = 0
    ties: int = 0
    both_bad: int = 0

    @property
    def total(self) -> int:
        return self.wins + self.losses + self.ties + self.both_bad


def tally(votes: list[Vote]) -> dict[str, SystemTally]:
    """Wins, losses, ties and both-bad per system ("base", "prompted", "tuned")."""
    out: dict[str, SystemTally] = {}
    outcome: Counter[tuple[str, str]] = Counter()
    for v in votes:
        for system in {v.left_system, v.right_system}:
            if v.verdict == "tie":
                outcome[(system, "ties")] += 1
            elif v.verdict == "both_bad":
                outcome[(system, "both_bad")] += 1
            else:
                outcome[(system, "wins" if system == v.winner else "losses")] += 1
    for (system, kind), n in outcome.items():
        setattr(out.setdefault(system, SystemTally()), kind, n)
    return out
