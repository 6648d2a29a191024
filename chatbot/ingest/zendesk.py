"""Reader for Zendesk ticket exports: each ticket's public comments become one conversation.

Accepted shapes (all JSON, detected by their keys):

- `{"tickets": [...], "users": [...]}` with each ticket's `comments` nested in it, or with a
  top-level `comments` object keyed by ticket id, or a `comments` array whose items carry
  `ticket_id`;
- `{"comments": [...], "users": [...]}`, the API's answer for one ticket (`include=users`);
- JSON Lines or a JSON array of tickets with nested comments (the account data export).

Only public comments are used: private ones are internal notes, not the brand's voice. A
comment's text is `plain_body`, else `body`; a public comment whose text is empty (an
attachment only) is skipped, not an error. Speakers: the author's role in `users` (end-user →
user; agent, admin → assistant); when the export has no `users`, the ticket's `requester_id` is
the customer and every other author an agent. Comments keep the export's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from chatbot.errors import InputError
from chatbot.ingest.jsonsafe import json_type
from chatbot.ingest.normalize import clean_text, finish_conversation
from chatbot.ingest.records import iter_items, short
from chatbot.ingest.report import Report
from chatbot.types import Conversation, Role, Turn

__all__ = ["read_zendesk_document", "read_tickets"]

_ROLES: dict[str, Role] = {
    "end-user": "user",
    "end_user": "user",
    "agent": "assistant",
    "admin": "assistant",
}
_TEXT_KEYS = ("plain_body", "body")


def _id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()
    return text[:64] or None


def _user_roles(users: object) -> dict[str, str]:
    roles: dict[str, str] = {}
    for user in users if isinstance(users, list) else ():
        if isinstance(user, dict) and isinstance(user.get("role"), str):
            user_id = _id(user.get("id"))
            if user_id is not None:
                roles[user_id] = user["role"]
    return roles


def _comments_by_ticket(comments: object) -> Mapping[str, object]:
    """Top-level comments grouped by ticket id; "" holds comments naming no ticket."""
    if isinstance(comments, dict):
        return {str(key): value for key, value in comments.items()}
    grouped: dict[str, list[object]] = {}
    for comment in comments if isinstance(comments, list) else ():
        ticket = _id(comment.get("ticket_id")) if isinstance(comment, dict) else None
        grouped.setdefault(ticket or "", []).append(comment)
    return grouped


def read_zendesk_document(doc: dict, report: Report) -> Iterator[Conversation]:
    """Conversations from a whole-file export object (with `tickets` and/or `comments`)."""
    roles = _user_roles(doc.get("users"))
    side = _comments_by_ticket(doc.get("comments"))
    tickets = doc.get("tickets")
    if tickets is None:
        for ticket_id, comments in side.items():
            where = f"ticket {ticket_id}" if ticket_id else "comments"
            conversation = _conversation({}, comments, roles, where, report)
            if conversation is not None:
                yield conversation
        return
    if not isinstance(tickets, list):
        raise InputError(
            f"'tickets' must be an array, found {json_type(tickets)}",
            file=report.file,
            field="tickets",
        )
    yield from read_tickets(iter_items(tickets), report, roles, side)


def read_tickets(
    records: Iterable[tuple[str, object]],
    report: Report,
    roles: Mapping[str, str] | None = None,
    side: Mapping[str, object] | None = None,
) -> Iterator[Conversation]:
    """Conversations from (location, ticket) pairs; comments nested or given in `side`."""
    for location, ticket in records:
        if not isinstance(ticket, dict):
            report.error(
                f"expected a ticket object, found {json_type(ticket)}", location, code="wrong-type"
            )
            continue
        ticket_id = _id(ticket.get("id"))
        where = f"ticket {ticket_id} ({location})" if ticket_id else location
        comments = ticket.get("comments")
        if comments is None and side and ticket_id:
            comments = side.get(ticket_id)
        if comments is None:
            report.error("no comments found for this ticket", where, "comments", "missing-field")
            continue
        conversation = _conversation(ticket, comments, roles or {}, where, report)
        if conversation is not None:
            yield conversation


def _conversation(
    ticket: dict, comments: object, roles: Mapping[str, str], where: str, report: Report
) -> Conversation | None:
    if not isinstance(comments, list):
        report.error(
            f"'comments' must be an array, found {json_type(comments)}",
            where,
            "comments",
            "wrong-type",
        )
        return None
    requester = _id(ticket.get("requester_id"))
    turns: list[Turn] = []
    for index, comment in enumerate(comments):
        ok, turn = _comment_turn(comment, f"comments[{index}]", roles, requester, where, report)
        if not ok:
            return None
        if turn is not None:
            turns.append(turn)
    return finish_conversation(turns, report, where)


def _comment_turn(
    comment: object,
    field: str,
    roles: Mapping[str, str],
    requester: str | None,
    where: str,
    report: Report,
) -> tuple[bool, Turn | None]:
    """(False, None) after an error; (True, None) for a comment skipped on purpose."""
    if not isinstance(comment, dict):
        report.error(
            f"expected a comment object, found {json_type(comment)}", where, field, "wrong-type"
        )
        return False, None
    if comment.get("public", True) is False:
        return True, None
    role = _author_role(comment, field, roles, requester, where, report)
    if role is None:
        return False, None
    text = _comment_text(comment, field, where, report)
    if text is None:
        return False, None
    return True, (Turn(role, text) if text else None)


def _author_role(
    comment: dict,
    field: str,
    roles: Mapping[str, str],
    requester: str | None,
    where: str,
    report: Report,
) -> Role | None:
    author = _id(comment.get("author_id"))
    if author is None:
        report.error("missing 'author_id'", where, f"{field}.author_id", "missing-field")
        return None
    zendesk_role = roles.get(author)
    if zendesk_role is not None:
        role = _ROLES.get(zendesk_role.strip().casefold())
        if role is None:
            report.error(
                f"author {author} has unknown role '{short(zendesk_role)}'; allowed: "
                "end-user, agent, admin",
                where,
                f"{field}.author_id",
                "unknown-role",
            )
        return role
    if requester is not None:
        return "user" if author == requester else "assistant"
    report.error(
        f"cannot tell whether author {author} is the customer or an agent: export the "
        "'users' list with roles, or the ticket's 'requester_id'",
        where,
        f"{field}.author_id",
        "unknown-author",
    )
    return None


def _comment_text(comment: dict, field: str, where: str, report: Report) -> str | None:
    """The cleaned text ("" for an attachment-only comment), or None after an error."""
    values = [comment.get(key) for key in _TEXT_KEYS]
    texts = [value for value in values if isinstance(value, str)]
    if not texts:
        found = next((v for v in values if v is not None), None)
        if found is None:
            report.error("missing 'body'", where, f"{field}.body", "missing-field")
        else:
            report.error(
                f"'body' must be text, found {json_type(found)}",
                where,
                f"{field}.body",
                "wrong-type",
            )
        return None
    return next((t for t in map(clean_text, texts) if t), "")
