"""PII redaction: what is replaced, what is kept, and that it runs offline and quietly."""

from __future__ import annotations

import json
import logging
import socket
from collections import Counter

import pytest

from chatbot.prepare import privacy
from chatbot.prepare.privacy import MAX_SAMPLES_PER_TYPE, RedactionResult, Redactor
from chatbot.types import Conversation, Role, Turn


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.fixture(scope="module")
def handle_redactor() -> Redactor:
    return Redactor(social_handles=True, keep_handles=["@Kettlebird"])


# --- each type is replaced by its placeholder --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("Write to jane.doe@example.com please", "Write to <EMAIL> please", "EMAIL"),
        ("mailto:jane@example.com", "mailto:<EMAIL>", "EMAIL"),
        ("Call +44 7700 900123 today", "Call <PHONE> today", "PHONE"),
        ("Call (555) 123-4567 today", "Call <PHONE> today", "PHONE"),
        ("Call 555-123-4567 today", "Call <PHONE> today", "PHONE"),
        ("Call +1 415 555 2671 today", "Call <PHONE> today", "PHONE"),
        ("Ring 020 7946 0958 or 030 901820", "Ring <PHONE> or <PHONE>", "PHONE"),
        ("Card 4111 1111 1111 1111 was charged", "Card <CARD> was charged", "CARD"),
        ("Card 5555555555554444 was charged", "Card <CARD> was charged", "CARD"),
        ("IBAN DE89 3704 0044 0532 0130 00, thanks", "IBAN <IBAN>, thanks", "IBAN"),
        ("IBAN GB82WEST12345698765432", "IBAN <IBAN>", "IBAN"),
        ("from 192.168.1.20 again", "from <IP> again", "IP"),
        ("from 2001:db8::8a2e:370:7334 again", "from <IP> again", "IP"),
        ("from fe80::1ff:fe23:4567:890a again", "from <IP> again", "IP"),
    ],
)
def test_each_type_is_replaced_by_its_placeholder(
    redactor: Redactor, text: str, expected: str, kind: str
) -> None:
    redacted, counts = redactor.redact_text(text)
    assert redacted == expected
    assert set(counts) == {kind}


@pytest.mark.parametrize(
    "text",
    [
        "Order KB-20931 shipped on 2024-05-01 at 14:30.",
        "It arrived 01.05.2024 at 14:30:15, parcel 2 of 3.",
        "The teapot was $12.50, the set $1,299.00 and €24.90.",
        "Product code X200-45 and KB-TP-0042, barcode 4006381333931.",
        "Order #1234567 and order 1234-5678, postcode 10115, ticket 4521.",
        "Tracking 1Z999AA10123456784, version 2.10.3.",
        "In 2024 we sold 1,200,000 tins.",
        "In C++ the scope operator is ::, in Rust too.",
        "Help page: https://kettlebird.com/help/orders/2024050112",
        "Follow https://medium.com/@kettlebird for recipes",
    ],
)
def test_order_numbers_dates_prices_codes_and_urls_are_kept(redactor: Redactor, text: str) -> None:
    assert redactor.redact_text(text) == (text, Counter())


def test_luhn_invalid_card_number_is_kept(redactor: Redactor) -> None:
    text = "Card 4111 1111 1111 1112 was declined"
    assert redactor.redact_text(text) == (text, Counter())
    assert redactor.redact_text("4111111111111112") == ("4111111111111112", Counter())


def test_iban_needs_a_valid_checksum(redactor: Redactor) -> None:
    assert redactor.redact_text("DE89 3704 0044 0532 0130 00")[0] == "<IBAN>"
    invalid = "DE88 3704 0044 0532 0130 00"
    assert redactor.redact_text(invalid) == (invalid, Counter())


def test_email_needs_a_real_domain(redactor: Redactor) -> None:
    for text in ("user@localhost", "a@b.notarealtld", "@ the station"):
        assert redactor.redact_text(text) == (text, Counter())


def test_ip_that_also_reads_as_a_phone_number_is_an_ip(redactor: Redactor) -> None:
    assert redactor.redact_text("ip 10.100.200.250") == ("ip <IP>", Counter({"IP": 1}))


# --- handles -----------------------------------------------------------------------------------


def test_handles_are_kept_unless_enabled(redactor: Redactor, handle_redactor: Redactor) -> None:
    text = "thanks @jane_doe!"
    assert redactor.redact_text(text) == (text, Counter())
    assert handle_redactor.redact_text(text) == ("thanks <HANDLE>!", Counter({"HANDLE": 1}))


def test_brand_handles_are_never_redacted(handle_redactor: Redactor) -> None:
    text = "@Kettlebird and @kettlebird and @KETTLEBIRD, cc @jane.doe"
    assert handle_redactor.redact_text(text) == (
        "@Kettlebird and @kettlebird and @KETTLEBIRD, cc <HANDLE>",
        Counter({"HANDLE": 1}),
    )
    bare = Redactor(social_handles=True, keep_handles=["kettlebird"])
    assert bare.redact_text("@Kettlebird")[0] == "@Kettlebird"


def test_email_domains_and_times_are_not_handles(handle_redactor: Redactor) -> None:
    assert handle_redactor.redact_text("jane@kettlebird.com, meet @5pm") == (
        "<EMAIL>, meet @5pm",
        Counter({"EMAIL": 1}),
    )


# --- counts, samples, conversations ------------------------------------------------------------


def test_counts_per_type(redactor: Redactor) -> None:
    text = "a@example.com, b@example.org, call 555-123-4567, card 4111 1111 1111 1111"
    redacted, counts = redactor.redact_text(text)
    assert redacted == "<EMAIL>, <EMAIL>, call <PHONE>, card <CARD>"
    assert counts == Counter({"EMAIL": 2, "PHONE": 1, "CARD": 1})


def _conv(i: int, *contents: str) -> Conversation:
    roles: tuple[Role, Role] = ("user", "assistant")
    turns = [Turn(roles[n % 2], c) for n, c in enumerate(contents)]
    return Conversation(turns, source="chats.jsonl", location=f"line {i}")


def test_redact_conversations_returns_new_conversations_counts_and_samples(
    redactor: Redactor,
) -> None:
    padding = "I would love to swap my tea parcel for something else. "
    convs = [
        _conv(i, f"{padding}Mail me at guest{i}@example.com {padding}", "Hi friend, will do!")
        for i in range(MAX_SAMPLES_PER_TYPE + 3)
    ]
    convs.append(_conv(99, "Call me on +44 7700 900123", "Hi friend, calling now."))
    before = [c.to_record() for c in convs]

    result = redactor.redact_conversations(convs)

    assert isinstance(result, RedactionResult)
    assert [c.to_record() for c in convs] == before, "inputs must not change"
    assert len(result.conversations) == len(convs)
    assert all(new is not old for new, old in zip(result.conversations, convs, strict=True))
    assert result.conversations[0].turns[0].content == f"{padding}Mail me at <EMAIL> {padding}"
    assert result.conversations[0].turns[1].content == "Hi friend, will do!"
    assert (result.conversations[0].source, result.conversations[0].location) == (
        "chats.jsonl",
        "line 0",
    )
    assert result.counts == Counter({"EMAIL": MAX_SAMPLES_PER_TYPE + 3, "PHONE": 1})
    assert result.total == MAX_SAMPLES_PER_TYPE + 4

    emails = result.samples["EMAIL"]
    assert len(emails) == MAX_SAMPLES_PER_TYPE
    first = emails[0]
    assert (first.kind, first.source, first.location) == ("EMAIL", "chats.jsonl", "line 0")
    assert "guest0@example.com" in first.before and "<EMAIL>" not in first.before
    assert "<EMAIL>" in first.after and "@" not in first.after
    # A short window around the change, not the whole message.
    assert len(first.before) < len(convs[0].turns[0].content)
    assert first.before.startswith("…") and first.before.endswith("…")
    assert len(first.after) <= 2 * 30 + len("<EMAIL>") + 2

    (phone,) = result.samples["PHONE"]
    assert phone.before == "Call me on +44 7700 900123"
    assert phone.after == "Call me on <PHONE>"
    assert phone.location == "line 99"


def test_summary_is_json_ready(redactor: Redactor) -> None:
    convs = [
        _conv(0, "mail ann@example.com or bob@example.org", "call +44 7700 900123"),
        _conv(1, "card 4111 1111 1111 1111", "ok"),
    ]
    summary = redactor.redact_conversations(convs).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["enabled"] is True and summary["total"] == 4
    assert summary["counts"] == {"CARD": 1, "EMAIL": 2, "PHONE": 1}
    # Types alternate, so the first few samples show every kind found.
    assert [s["kind"] for s in summary["samples"]] == ["EMAIL", "PHONE", "CARD", "EMAIL"]
    assert summary["samples"][1] == {
        "kind": "PHONE",
        "before": "call +44 7700 900123",
        "after": "call <PHONE>",
        "source": "chats.jsonl",
        "location": "line 0",
    }


def test_masked_samples_hold_no_personal_data(redactor: Redactor) -> None:
    convs = [
        _conv(0, "mail ann@example.com or bob@example.org", "call +44 7700 900123"),
        _conv(1, "card 4111 1111 1111 1111", "ok"),
    ]
    summary = redactor.redact_conversations(convs, mask_samples=True).summary()
    dumped = json.dumps(summary, ensure_ascii=False)
    for value in ("ann@", "bob@", "7700 900123", "4111 1111"):
        assert value not in dumped
    # The shape still shows what was replaced; an e-mail keeps its domain.
    assert [s["before"] for s in summary["samples"]] == [
        "mail •••@example.com or •••@example.org",
        "call +•• •••• ••••23",
        "card •••• •••• •••• ••11",
        "mail •••@example.com or •••@example.org",
    ]


def test_max_samples_is_configurable(redactor: Redactor) -> None:
    convs = [_conv(i, f"mail guest{i}@example.com") for i in range(4)]
    result = redactor.redact_conversations(convs, max_samples=2)
    assert [s.location for s in result.samples["EMAIL"]] == ["line 0", "line 1"]
    assert result.counts["EMAIL"] == 4


def test_disabled_redactor_changes_nothing() -> None:
    off = Redactor(enabled=False, social_handles=True)
    text = "jane@example.com +44 7700 900123 4111 1111 1111 1111 @jane"
    assert off.redact_text(text) == (text, Counter())
    convs = [_conv(0, text, "ok")]
    result = off.redact_conversations(convs)
    assert [c.to_record() for c in result.conversations] == [c.to_record() for c in convs]
    assert result.counts == Counter() and result.samples == {}
    assert result.summary() == {"enabled": False, "total": 0, "counts": {}, "samples": []}


# --- idempotence and unicode -------------------------------------------------------------------


def test_placeholders_already_present_are_untouched(handle_redactor: Redactor) -> None:
    text = "Reach me at <EMAIL> or <PHONE>, card <CARD>, <IBAN>, <IP>, <HANDLE>."
    assert handle_redactor.redact_text(text) == (text, Counter())


@pytest.mark.parametrize(
    "text",
    [
        "jane@example.com, @jane, +44 7700 900123, 4111 1111 1111 1111, 10.0.0.1, "
        "DE89 3704 0044 0532 0130 00 and https://kettlebird.com/help",
        # The phone only reads as one once the card glued to it is replaced.
        "4111 1111 1111 1111 0301234567",
        "IBAN DE89 3704 0044 0532 0130 00 0301234567",
    ],
)
def test_redacting_twice_is_redacting_once(handle_redactor: Redactor, text: str) -> None:
    once, counts = handle_redactor.redact_text(text)
    assert counts
    assert handle_redactor.redact_text(once) == (once, Counter())


def test_unicode_around_spans_is_preserved(handle_redactor: Redactor) -> None:
    text = "Grüße 🫖 — schreib an jürgen@bücher.de oder ☎ +49 30 901820 🍵 ¡gracias! @søren"
    redacted, counts = handle_redactor.redact_text(text)
    assert redacted == "Grüße 🫖 — schreib an <EMAIL> oder ☎ <PHONE> 🍵 ¡gracias! <HANDLE>"
    assert counts == Counter({"EMAIL": 1, "PHONE": 1, "HANDLE": 1})


# --- performance shortcut, offline, quiet ------------------------------------------------------


def test_texts_without_candidates_skip_presidio(
    redactor: Redactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("presidio should not run on this text")

    monkeypatch.setattr(privacy, "_analyzer", fail)
    for text in ("Hi friend, thanks!", "Order KB-20931 at 14:30", "Only $12.50 🍵", ""):
        assert redactor.redact_text(text) == (text, Counter())


def test_no_network_and_no_noise_on_first_use(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("redaction must not touch the network")

    # A fresh analyzer, so the public-suffix list is loaded inside this test.
    privacy._analyzer.cache_clear()
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    caplog.set_level(logging.DEBUG)

    redactor = Redactor(social_handles=True)
    text = "jane@example.com, +44 7700 900123, 4111 1111 1111 1111, DE89370400440532013000"
    assert redactor.redact_text(text)[0] == "<EMAIL>, <PHONE>, <CARD>, <IBAN>"

    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
    assert [r for r in caplog.records if r.name == "presidio-analyzer"] == []


def test_analyzer_is_built_once_per_settings() -> None:
    a = Redactor(social_handles=True, keep_handles=["@Kettlebird"])
    b = Redactor(social_handles=True, keep_handles=["kettlebird"])
    a.redact_text("hi@example.com")
    b.redact_text("hi@example.com")
    assert privacy._analyzer(True, a.keep_handles) is privacy._analyzer(True, b.keep_handles)
    assert privacy._analyzer(True, ()) is not privacy._analyzer(False, ())


# --- failing closed ----------------------------------------------------------------------------


def _conversation(*texts: str, location: str = "line 1") -> Conversation:
    roles: list[Role] = ["user", "assistant"]
    turns = [Turn(roles[i % 2], text) for i, text in enumerate(texts)]
    return Conversation(turns, "chat.jsonl", location)


def test_a_regex_timeout_is_an_error_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import presidio_analyzer.pattern_recognizer

    monkeypatch.setattr(presidio_analyzer.pattern_recognizer, "REGEX_TIMEOUT_SECONDS", 0)
    redactor = Redactor()
    with pytest.raises(privacy.RedactionError, match="could not check for personal data"):
        redactor.redact_text("write to jane@example.com")
    # Texts no detector has to look at are unaffected.
    assert redactor.redact_text("thanks, see you soon") == ("thanks, see you soon", Counter())


def test_a_failing_detector_leaves_the_conversation_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> list:
        raise RuntimeError("detector crashed")

    monkeypatch.setattr(privacy._OfflineEmailRecognizer, "analyze", broken)
    good = _conversation("hi there", "hello!", location="line 1")
    bad = _conversation("hi", "ok", "mail jane@example.com", location="line 2")
    result = Redactor().redact_conversations([good, bad])
    assert [c.location for c in result.conversations] == ["line 1"]
    [failure] = result.failures
    assert failure.severity == "error" and failure.code == privacy.UNCHECKED
    assert (failure.file, failure.location, failure.field) == ("chat.jsonl", "line 2", "turn 3")
    assert "detector crashed" in failure.message and "jane@" not in failure.message
    assert result.counts == Counter()


def test_texts_over_the_size_cap_are_refused_before_detection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*_args: object) -> None:
        raise AssertionError("no detector may run on a text over the cap")

    monkeypatch.setattr(privacy, "MAX_TEXT_CHARS", 100)
    monkeypatch.setattr(privacy, "_analyzer", fail)
    with pytest.raises(privacy.RedactionError, match="101 characters long, over the 100"):
        Redactor().redact_text(("jane@example.com " * 10)[:101])
    assert Redactor(enabled=False).redact_text("a" * 101)[0] == "a" * 101


def test_thousands_of_addresses_in_one_turn(redactor: Redactor) -> None:
    text = " ".join(f"user{i}@example.com" for i in range(2000))
    redacted, counts = redactor.redact_text(text)
    assert counts == Counter({"EMAIL": 2000}) and redacted == " ".join(["<EMAIL>"] * 2000)


def test_overlap_resolution_keeps_the_best_spans(redactor: Redactor) -> None:
    """The bisecting resolution agrees with checking every kept span, on random spans."""
    import random

    def every_pair(spans: list[privacy._Span]) -> list[privacy._Span]:
        kept: list[privacy._Span] = []
        for span in sorted(spans, key=lambda s: (-s.score, s.start - s.end, s.start)):
            if all(span.end <= k.start or span.start >= k.end for k in kept):
                kept.append(span)
        return sorted(kept)

    rng = random.Random(0)
    for _ in range(300):
        spans = []
        for _ in range(rng.randint(0, 30)):
            start = rng.randint(0, 60)
            score = rng.choice([0.3, 0.5, 0.6, 1.0])
            spans.append(privacy._Span(start, start + rng.randint(1, 12), "X", score))
        assert privacy._resolve_overlaps(spans) == every_pair(spans)
