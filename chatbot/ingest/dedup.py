"""Exact-duplicate removal across every file of a brand.

Duplicates are compared after normalisation (roles and trimmed text of every turn, system turn
included), so the same exchange exported twice is caught while near-duplicates are kept: they
may differ on purpose. The first occurrence wins; each dropped copy gets a warning naming where
it was and where the kept one is.
"""

from __future__ import annotations

from collections.abc import Iterable

from chatbot.types import Conversation, Finding

__all__ = ["deduplicate"]


def _where(conversation: Conversation) -> str:
    return ", ".join(p for p in (conversation.source, conversation.location) if p) or "elsewhere"


def deduplicate(
    conversations: Iterable[Conversation],
) -> tuple[list[Conversation], list[Finding]]:
    """The conversations without exact duplicates, and one warning per dropped duplicate."""
    first_seen: dict[tuple[tuple[str, str], ...], Conversation] = {}
    kept: list[Conversation] = []
    findings: list[Finding] = []
    for conversation in conversations:
        key = conversation.key()
        original = first_seen.get(key)
        if original is None:
            first_seen[key] = conversation
            kept.append(conversation)
            continue
        findings.append(
            Finding(
                "warning",
                f"exact duplicate of the conversation at {_where(original)}; dropped",
                conversation.source,
                conversation.location,
                code="duplicate",
            )
        )
    return kept, findings
