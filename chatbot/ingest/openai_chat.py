"""Reader for OpenAI chat fine-tuning data: `{"messages": [{"role", "content"}, ...]}` records.

Records come one per line (JSON Lines, OpenAI's own format) or as a JSON array, or a single
object. Roles: system (and "developer", OpenAI's newer name for it), user, assistant. Tool and
function messages are not conversation text and are refused as unknown roles. `content` may be
a string or OpenAI's list of text parts; other keys (`name`, `weight`) are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from chatbot.ingest.jsonsafe import json_type
from chatbot.ingest.normalize import finish_conversation
from chatbot.ingest.records import MessageSpec, parse_messages
from chatbot.ingest.report import Report
from chatbot.types import Conversation

__all__ = ["read_openai"]

_SPEC = MessageSpec(
    role_keys=("role",),
    content_keys=("content",),
    roles={"system": "system", "developer": "system", "user": "user", "assistant": "assistant"},
)


def read_openai(records: Iterable[tuple[str, object]], report: Report) -> Iterator[Conversation]:
    """Conversations from (location, record) pairs; bad records become findings."""
    for location, record in records:
        if not isinstance(record, dict):
            report.error(
                f"expected an object with 'messages', found {json_type(record)}",
                location,
                code="wrong-type",
            )
            continue
        if "messages" not in record:
            report.error("missing 'messages'", location, "messages", "missing-field")
            continue
        turns = parse_messages(record["messages"], "messages", _SPEC, location, report)
        if turns is not None:
            conversation = finish_conversation(turns, report, location)
            if conversation is not None:
                yield conversation
