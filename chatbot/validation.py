"""The validation report: errors that block training, warnings worth a look, and statistics.

Checks follow OpenAI's chat fine-tuning data-prep checks (format, roles, missing replies, token
limits) plus what a brand dataset needs (enough conversations, duplicates, reply lengths).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from chatbot.types import Conversation, Finding

__all__ = [
    "FIRST_TASTE_CONVERSATIONS",
    "MIN_CONVERSATIONS",
    "RECOMMENDED_CONVERSATIONS",
    "TokenCounter",
    "ValidationLimits",
    "ValidationReport",
    "data_size_advice",
    "validate",
]

# How many conversations a brand needs: the one place these figures live. The prepare report,
# the CLI and the app all word their advice through `data_size_advice`.
MIN_CONVERSATIONS = 10
"""Fewer cannot be trained on: there is nothing to learn a voice from."""
FIRST_TASTE_CONVERSATIONS = 50
"""Enough for a first taste of the voice: the tuned model picks up greetings and sign-offs."""
RECOMMENDED_CONVERSATIONS = 300
"""A few hundred: enough for a voice that holds up across topics."""


def data_size_advice(n_conversations: int, minimum: int = MIN_CONVERSATIONS) -> str | None:
    """One plain sentence on whether `n_conversations` are enough; None when they are plenty.

    `minimum` is the prepare setting's minimum (`PrepareConfig.min_conversations`).
    """
    n = n_conversations
    recommended = f"a few hundred ({RECOMMENDED_CONVERSATIONS} or more) are recommended"
    if n < minimum:
        return (
            f"Only {n} conversation{'s' * (n != 1)}: at least {minimum} are needed to train. "
            f"Add more sample conversations; {recommended}."
        )
    if n < FIRST_TASTE_CONVERSATIONS:
        return (
            f"{n} conversations: enough to train, but the voice will be learned only roughly. "
            f"{FIRST_TASTE_CONVERSATIONS} give a first taste of it; {recommended}."
        )
    if n < RECOMMENDED_CONVERSATIONS:
        return (
            f"{n} conversations: enough for a first taste of the voice. For a voice that holds "
            f"up, add more: {recommended}."
        )
    return None


# (token count of every whole conversation, assistant tokens of every conversation)
TokenCounter = Callable[[Sequence[Conversation]], tuple[list[int], list[int]]]


@dataclass
class ValidationLimits:
    min_conversations: int = MIN_CONVERSATIONS
    """Fewer conversations than this is an error: there is nothing to learn a voice from."""
    recommended_conversations: int = RECOMMENDED_CONVERSATIONS
    """Fewer than this is a warning worded by `data_size_advice`."""
    max_tokens: int = 1024
    """The training length: longer examples are cut during training (a warning)."""
    min_reply_words: int = 2
    """Assistant replies shorter than this are flagged as very short."""
    max_reply_words: int = 400
    """Assistant replies longer than this are flagged as very long."""
    max_listed: int = 20
    """At most this many warnings of one kind are listed; the rest are counted."""


@dataclass
class ValidationReport:
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "errors": [asdict(f) | {"text": str(f)} for f in self.errors],
            "warnings": [asdict(f) | {"text": str(f)} for f in self.warnings],
            "stats": self.stats,
        }


def _percentiles(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"p5": 0, "p50": 0, "p95": 0, "max": 0, "mean": 0}
    arr = np.asarray(values)
    p5, p50, p95 = np.percentile(arr, [5, 50, 95])
    return {
        "p5": round(float(p5), 1),
        "p50": round(float(p50), 1),
        "p95": round(float(p95), 1),
        "max": int(arr.max()),
        "mean": round(float(arr.mean()), 1),
    }


def _capped(findings: list[Finding], limit: int, code: str, what: str) -> list[Finding]:
    """Keep the first `limit` findings and summarise the rest, so huge inputs stay readable."""
    if len(findings) <= limit:
        return findings
    more = len(findings) - limit
    return [*findings[:limit], Finding("warning", f"... and {more} more {what}", code=code)]


def _reply_length_warnings(
    convs: Sequence[Conversation], limits: ValidationLimits
) -> list[Finding]:
    short, long_ = [], []
    for conv in convs:
        for i, turn in enumerate(conv.turns):
            if turn.role != "assistant":
                continue
            words = len(turn.content.split())
            fld = f"messages[{i}].content"
            if words < limits.min_reply_words:
                short.append(
                    Finding(
                        "warning",
                        f"very short reply ({words} word(s))",
                        conv.source,
                        conv.location,
                        fld,
                        "short_reply",
                    )
                )
            elif words > limits.max_reply_words:
                long_.append(
                    Finding(
                        "warning",
                        f"very long reply ({words} words)",
                        conv.source,
                        conv.location,
                        fld,
                        "long_reply",
                    )
                )
    return _capped(short, limits.max_listed, "short_reply", "very short replies") + _capped(
        long_, limits.max_listed, "long_reply", "very long replies"
    )


def _token_warnings(
    convs: Sequence[Conversation], totals: list[int], limits: ValidationLimits
) -> list[Finding]:
    over = [
        Finding(
            "warning",
            f"{n} tokens, over the training length of {limits.max_tokens}: it will be cut",
            c.source,
            c.location,
            "",
            "too_long",
        )
        for c, n in zip(convs, totals, strict=True)
        if n > limits.max_tokens
    ]
    return _capped(over, limits.max_listed, "too_long", "conversations over the training length")


def _count_warnings(n: int, limits: ValidationLimits) -> tuple[list[Finding], list[Finding]]:
    advice = data_size_advice(n, limits.min_conversations)
    if n < limits.min_conversations:
        return [Finding("error", advice or "", code="too_few")], []
    if n < limits.recommended_conversations and advice:
        return [], [Finding("warning", advice, code="few")]
    return [], []


def validate(
    conversations: Sequence[Conversation],
    reader_findings: Sequence[Finding] = (),
    *,
    count_tokens: TokenCounter | None = None,
    limits: ValidationLimits | None = None,
) -> ValidationReport:
    """Check a set of normalised conversations; never raises for bad data, it reports it."""
    limits = limits or ValidationLimits()
    report = ValidationReport(
        errors=[f for f in reader_findings if f.severity == "error"],
        warnings=[f for f in reader_findings if f.severity == "warning"],
    )
    errors, warnings = _count_warnings(len(conversations), limits)
    report.errors += errors
    report.warnings += warnings
    report.warnings += _reply_length_warnings(conversations, limits)

    turns = [len(c.turns) for c in conversations]
    reply_words = [
        len(t.content.split()) for c in conversations for t in c.turns if t.role == "assistant"
    ]
    report.stats = {
        "conversations": len(conversations),
        "turns": int(sum(turns)),
        "turns_per_conversation": _percentiles(turns),
        "assistant_replies": len(reply_words),
        "words_per_reply": _percentiles(reply_words),
    }
    if count_tokens is not None and conversations:
        totals, assistant = count_tokens(conversations)
        report.warnings += _token_warnings(conversations, totals, limits)
        report.stats |= {
            "tokens_per_example": _percentiles(totals),
            "total_tokens": int(sum(totals)),
            "assistant_tokens": int(sum(assistant)),
            "assistant_tokens_per_example": _percentiles(assistant),
            "max_tokens": limits.max_tokens,
        }
    return report


def tokenizer_counter(tokenizer) -> TokenCounter:  # noqa: ANN001 - any transformers tokenizer
    """Count tokens as the chat template lays them out, fast enough for 10k conversations.

    Rendering the Jinja chat template per conversation costs ~1 ms each; instead the turn contents
    are tokenized in one batch and the template's own tokens are measured once: a fixed part (e.g. a
    default system prompt) plus a constant per turn. Templates built from special-token delimiters
    (ChatML, Llama, Mistral) make this exact up to merges at turn edges.
    """

    def render(n_pairs: int) -> int:
        msgs = [{"role": r, "content": "x"} for _ in range(n_pairs) for r in ("user", "assistant")]
        ids = tokenizer.apply_chat_template(msgs, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        return len(ids) - 2 * n_pairs * len(tokenizer("x", add_special_tokens=False)["input_ids"])

    one, two = render(1), render(2)
    per_turn = (two - one) / 2
    fixed = one - 2 * per_turn

    def count(conversations: Sequence[Conversation]) -> tuple[list[int], list[int]]:
        texts = [t.content for c in conversations for t in c.turns]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        totals, assistant, i = [], [], 0
        for conv in conversations:
            n = len(conv.turns)
            sizes = lengths[i : i + n]
            i += n
            totals.append(int(round(fixed + per_turn * n + sum(sizes))))
            assistant.append(
                int(
                    sum(
                        s + per_turn
                        for s, t in zip(sizes, conv.turns, strict=True)
                        if t.role == "assistant"
                    )
                )
            )
        return totals, assistant

    return count
