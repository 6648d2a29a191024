"""Reader for ShareGPT data: `{"conversations": [{"from", "value"}, ...]}` records.

Records come as a JSON array (the usual ShareGPT file), JSON Lines, or a single object. Speaker
names vary between datasets, so they are matched case-insensitively against a generous list
(human/user → user; gpt/assistant/chatgpt/bard/... and the brand's own names → assistant;
system). Some derived datasets write `role`/`content` inside `conversations`, or put the system
prompt in a top-level `system` field; both are accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from chatbot.ingest.jsonsafe import json_type
from chatbot.ingest.normalize import clean_text, finish_conversation
from chatbot.ingest.records import MessageSpec, parse_messages
from chatbot.ingest.report import Report
from chatbot.types import Conversation, Role, Turn

__all__ = ["read_sharegpt", "SHAREGPT_ROLES"]

# Speaker names seen in public ShareGPT-style datasets for the model's side.
_ASSISTANT_NAMES = (
    *("gpt", "assistant", "chatgpt", "bard", "bing", "claude", "model", "bot", "ai", "agent"),
    *("llama", "gemini", "copilot"),
)
SHAREGPT_ROLES: dict[str, Role] = {
    **dict.fromkeys(("human", "user", "customer", "prompter"), "user"),
    **dict.fromkeys(_ASSISTANT_NAMES, "assistant"),
    "system": "system",
}


def _spec(brand_names: Sequence[str]) -> MessageSpec:
    roles: dict[str, Role] = dict(SHAREGPT_ROLES)
    roles.update({name.strip().casefold(): "assistant" for name in brand_names if name.strip()})
    return MessageSpec(("from", "role"), ("value", "content"), roles)


def read_sharegpt(
    records: Iterable[tuple[str, object]], report: Report, brand_names: Sequence[str] = ()
) -> Iterator[Conversation]:
    """Conversations from (location, record) pairs; bad records become findings."""
    spec = _spec(brand_names)
    for location, record in records:
        if not isinstance(record, dict):
            report.error(
                f"expected an object with 'conversations', found {json_type(record)}",
                location,
                code="wrong-type",
            )
            continue
        if "conversations" not in record:
            report.error("missing 'conversations'", location, "conversations", "missing-field")
            continue
        turns = parse_messages(record["conversations"], "conversations", spec, location, report)
        if turns is None:
            continue
        system = record.get("system")
        if isinstance(system, str) and clean_text(system):
            turns.insert(0, Turn("system", clean_text(system)))
        conversation = finish_conversation(turns, report, location)
        if conversation is not None:
            yield conversation
