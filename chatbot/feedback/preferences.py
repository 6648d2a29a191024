"""Preference data from Compare votes, for TRL's DPO and KTO trainers, with personal data redacted.

A vote says which of two replies to one prompt a person preferred. Written as TRL's documented
dataset types (https://huggingface.co/docs/trl/dataset_formats):

- DPO, "preference": `{"prompt", "chosen", "rejected"}` per left/right verdict. Ties and "both bad"
  rank nothing and are left out.
- KTO, "unpaired preference": `{"prompt", "completion", "label"}`, one row per judged reply: the
  preferred reply True and the other False; with "both bad" both replies are False; ties are left
  out.

In the conversational format (the default, and what `SFTTrainer`'s `messages` data is), prompts are
message lists (`[{"role": "user", "content": ...}]`, earlier turns first) and replies are one
assistant message in a list; the standard format uses plain strings and only one-turn votes, as a
string cannot say where turns begin. A DPO pair needs one prompt for both replies: when the two
panes had different earlier replies, the two replies answer different conversations, so the vote is
left out of DPO (KTO keeps both, each with its own pane's history). Every text goes through the
brand's `Redactor`: e-mail addresses or phone numbers typed into a vote leave as placeholders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.brand.profile import BrandProfile
from chatbot.errors import BrandVoiceError
from chatbot.feedback.votes import Vote, list_votes
from chatbot.prepare.privacy import Redactor
from chatbot.storage import atomic_write_jsonl
from chatbot.types import PreferenceKind, PromptStyle
from chatbot.workspace import Workspace

__all__ = [
    "PreferenceKind",
    "PromptStyle",
    "PreferenceExport",
    "PreferenceRows",
    "export_votes",
    "preference_rows",
    "brand_redactor",
]

Message = dict[str, str]


@dataclass(frozen=True)
class PreferenceExport:
    path: Path
    kind: str
    rows: int
    votes: int
    skipped: dict[str, int] = field(default_factory=dict)
    """Votes left out, by reason."""
    redacted: dict[str, int] = field(default_factory=dict)
    """Personal data replaced, by placeholder type."""


@dataclass(frozen=True)
class PreferenceRows:
    """A brand's (or one run's) votes as TRL preference rows, personal data redacted."""

    kind: str
    rows: list[dict[str, Any]]
    votes: int
    skipped: dict[str, int] = field(default_factory=dict)
    """Votes left out, by reason."""
    redacted: dict[str, int] = field(default_factory=dict)
    """Personal data replaced, by placeholder type."""


class _Texts:
    """Redacts each text once and counts what was replaced."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self.counts: Counter[str] = Counter()

    def __call__(self, text: str) -> str:
        clean, counts = self._redactor.redact_text(text)
        self.counts.update(counts)
        return clean

    def messages(self, messages: list[Message]) -> list[Message]:
        return [{"role": m["role"], "content": self(m["content"])} for m in messages]


def brand_redactor(ws: Workspace, brand: str) -> Redactor:
    """A redactor with the brand's handle settings, always on (votes are exported, not trained)."""
    profile_file = ws.brand_dir(brand) / "brand.yaml"
    privacy = BrandProfile.load(profile_file).privacy if profile_file.is_file() else None
    if privacy is None:
        return Redactor()
    return Redactor(social_handles=privacy.redact_social_handles, keep_handles=privacy.keep_handles)


def _history(vote: Vote, side: str) -> list[Message]:
    turns = vote.history.get(side) if isinstance(vote.history, dict) else None
    return [
        {"role": t["role"], "content": t["content"]}
        for t in turns or []
        if isinstance(t, dict) and t.get("role") in ("user", "assistant")
    ]


def _sides(vote: Vote) -> tuple[str, str] | None:
    """(winning side, losing side), or None for a tie or both bad."""
    return {"left": ("left", "right"), "right": ("right", "left")}.get(vote.verdict)


def _prompt(history: list[Message], prompt: str, style: str, texts: _Texts) -> Any:
    if style == "standard":
        return texts(prompt)
    return texts.messages([*history, {"role": "user", "content": prompt}])


def _reply(text: str, style: str, texts: _Texts) -> Any:
    return texts(text) if style == "standard" else [{"role": "assistant", "content": texts(text)}]


def _replies(vote: Vote) -> dict[str, str]:
    return {"left": vote.left_reply, "right": vote.right_reply}


def _dpo_rows(
    votes: list[Vote], texts: _Texts, style: str, skipped: Counter[str]
) -> Iterator[dict[str, Any]]:
    """TRL preference rows, one per left/right verdict; reasons for the others go to `skipped`."""
    for vote in votes:
        sides = _sides(vote)
        if sides is None:
            skipped[vote.verdict] += 1
            continue
        win, lose = sides
        history = _history(vote, win)
        if history != _history(vote, lose):
            skipped["different earlier replies"] += 1
            continue
        if style == "standard" and history:
            skipped["earlier turns (standard format)"] += 1
            continue
        yield {
            "prompt": _prompt(history, vote.prompt, style, texts),
            "chosen": _reply(_replies(vote)[win], style, texts),
            "rejected": _reply(_replies(vote)[lose], style, texts),
        }


def _kto_rows(
    votes: list[Vote], texts: _Texts, style: str, skipped: Counter[str]
) -> Iterator[dict[str, Any]]:
    """TRL unpaired preference rows: each judged reply, True if preferred, else False."""
    for vote in votes:
        if vote.verdict == "tie":
            skipped["tie"] += 1
            continue
        histories = {side: _history(vote, side) for side in ("left", "right")}
        if style == "standard" and any(histories.values()):
            skipped["earlier turns (standard format)"] += 1
            continue
        for side, history in histories.items():
            yield {
                "prompt": _prompt(history, vote.prompt, style, texts),
                "completion": _reply(_replies(vote)[side], style, texts),
                # "both_bad" makes both replies undesirable; otherwise only the winner is desirable.
                "label": vote.verdict == side,
            }


def export_votes(
    ws: Workspace,
    brand: str,
    out: Path,
    kind: str = "dpo",
    *,
    run_id: str | None = None,
    style: str = "conversational",
    redactor: Redactor | None = None,
) -> PreferenceExport:
    """Write the brand's votes (optionally one run's) to `out` as DPO or KTO JSONL, atomically.

    `redactor` defaults to `brand_redactor(ws, brand)`. Raises BrandVoiceError for an unknown kind
    or style, or when the brand has no votes.
    """
    data = preference_rows(ws, brand, kind, run_id=run_id, style=style, redactor=redactor)
    if not data.votes:
        raise BrandVoiceError(
            f"Brand '{ws.find_brand(brand)}' has no votes"
            f"{' for run ' + run_id if run_id else ''} yet; vote on replies in the app's Compare "
            "tab first."
        )
    atomic_write_jsonl(Path(out), data.rows)
    return PreferenceExport(
        Path(out), kind, len(data.rows), data.votes, data.skipped, data.redacted
    )


def preference_rows(
    ws: Workspace,
    brand: str,
    kind: str = "dpo",
    *,
    run_id: str | None = None,
    style: str = "conversational",
    redactor: Redactor | None = None,
) -> PreferenceRows:
    """The brand's votes (optionally one run's) as DPO or KTO rows, redacted; none is no error."""
    if kind not in ("dpo", "kto"):
        raise BrandVoiceError(f"Unknown preference format {kind!r}; use dpo or kto.")
    if style not in ("conversational", "standard"):
        raise BrandVoiceError(f"Unknown prompt style {style!r}; use conversational or standard.")
    slug = ws.find_brand(brand)
    votes = list_votes(ws, slug, run_id)
    texts = _Texts(redactor or brand_redactor(ws, slug))
    skipped: Counter[str] = Counter()
    make = _dpo_rows if kind == "dpo" else _kto_rows
    rows = list(make(votes, texts, style, skipped))
    return PreferenceRows(kind, rows, len(votes), dict(skipped), dict(texts.counts))
