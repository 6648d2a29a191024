"""Ingest: brand files in, typed records out.

The conversation readers turn each supported source format (OpenAI chat JSONL, ShareGPT,
CSV/TSV tables, speaker-labelled transcripts, Zendesk ticket exports) into the same
`Conversation` records plus `Finding`s for every problem, naming file and line. Ingest knows
nothing about validation policy, privacy or training: it reads faithfully and reports.
"""

from chatbot.ingest.dedup import deduplicate
from chatbot.ingest.reader import SUPPORTED_FORMATS, ReadResult, read_conversations
from chatbot.ingest.style_guide import StyleGuide, read_style_guide

__all__ = [
    "read_conversations",
    "ReadResult",
    "deduplicate",
    "SUPPORTED_FORMATS",
    "read_style_guide",
    "StyleGuide",
]
