"""The validation report: error and warning classes, statistics, token counting."""

from __future__ import annotations

from chatbot.prepare.validation import ValidationLimits, tokenizer_counter, validate
from chatbot.types import Conversation, Finding, Turn


def _conv(reply: str, user: str = "Where is my tea?", i: int = 0) -> Conversation:
    return Conversation([Turn("user", user), Turn("assistant", reply)], "c.jsonl", f"line {i + 1}")


def _many(n: int) -> list[Conversation]:
    return [_conv(f"Hi friend, your parcel number {i} ships today.", i=i) for i in range(n)]


def test_fewer_than_ten_conversations_is_an_error():
    report = validate(_many(9))
    assert not report.ok
    assert [e.code for e in report.errors] == ["too_few"]
    assert "at least 10" in report.errors[0].message
    assert validate(_many(10)).ok


def test_reader_findings_are_split_by_severity():
    findings = [
        Finding("error", "malformed JSON", "c.jsonl", "line 3"),
        Finding("warning", "duplicate", "c.jsonl", "line 4"),
    ]
    report = validate(_many(12), findings)
    assert [str(e) for e in report.errors] == ["c.jsonl, line 3: malformed JSON"]
    assert any(w.message == "duplicate" for w in report.warnings)


def test_short_and_long_replies_are_warned_with_location():
    convs = _many(10) + [_conv("Ok", i=10), _conv("word " * 500, i=11)]
    report = validate(convs)
    codes = {w.code: w for w in report.warnings}
    assert codes["short_reply"].location == "line 11"
    assert codes["short_reply"].field == "messages[1].content"
    assert codes["long_reply"].location == "line 12"


def test_warning_lists_are_capped():
    convs = [_conv("Ok", i=i) for i in range(50)]
    report = validate(convs, limits=ValidationLimits(max_listed=5))
    short = [w for w in report.warnings if w.code == "short_reply"]
    assert len(short) == 6 and short[-1].message == "... and 45 more very short replies"


def test_statistics():
    convs = _many(20)
    convs[0].turns.extend([Turn("user", "thanks"), Turn("assistant", "Any time, friend.")])
    stats = validate(convs).stats
    assert stats["conversations"] == 20
    assert stats["turns"] == 42
    assert stats["assistant_replies"] == 21
    assert stats["words_per_reply"]["p50"] == 8


class _CharTokenizer:
    """A tokenizer with a ChatML-like template: one token per character plus 3 per turn."""

    def __call__(self, texts, add_special_tokens=False):
        if isinstance(texts, str):
            return {"input_ids": list(texts)}
        return {"input_ids": [list(t) for t in texts]}

    def apply_chat_template(self, messages, tokenize=True):
        ids = ["<sys>"] * 5
        for m in messages:
            ids += ["<s>", m["role"], *m["content"], "</s>"]
        return ids


def test_token_counts_match_the_template_and_flag_long_examples():
    convs = _many(10) + [_conv("x" * 300, i=10)]
    counter = tokenizer_counter(_CharTokenizer())
    totals, assistant = counter(convs)
    for conv, total in zip(convs, totals, strict=True):
        assert total == len(_CharTokenizer().apply_chat_template(conv.to_messages()))
    assert assistant[10] == 300 + 3
    report = validate(convs, count_tokens=counter, limits=ValidationLimits(max_tokens=200))
    too_long = [w for w in report.warnings if w.code == "too_long"]
    assert [w.location for w in too_long] == ["line 11"]
    assert report.stats["tokens_per_example"]["max"] == totals[10]
