"""The prepare stage end to end on the test brand: files in, brand folder out, nothing lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chatbot.brand.profile import BrandProfile
from chatbot.config import PrepareConfig
from chatbot.errors import InputError
from chatbot.prepare.pipeline import prepare, split_train_eval
from chatbot.types import Conversation, Turn
from chatbot.workspace import Workspace

ASSETS = Path(__file__).parent / "assets" / "brand"
FILES = [ASSETS / "conversations.jsonl", ASSETS / "tickets.csv"]
GUIDE = ASSETS / "style_guide.md"


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace.open(tmp_path / "ws")


def test_prepare_writes_the_brand_folder(ws):
    result = prepare(ws, "Lumen Lamps", FILES, GUIDE)
    assert result.ok, result.report.errors
    folder = ws.brand_dir("lumen-lamps")
    assert result.brand_dir == folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "brand.yaml",
        "conversations.jsonl",
        "eval.jsonl",
        "report.json",
        "style_guide.md",
        "train.jsonl",
    ]
    rows = [json.loads(x) for x in (folder / "conversations.jsonl").read_text().splitlines()]
    assert len(rows) == 18 and {r["source"] for r in rows} == {"conversations.jsonl", "tickets.csv"}
    train = (folder / "train.jsonl").read_text().splitlines()
    evals = (folder / "eval.jsonl").read_text().splitlines()
    assert len(train) + len(evals) == 18 and len(evals) >= 2
    assert result.formats == {"conversations.jsonl": "openai", "tickets.csv": "table"}
    profile = BrandProfile.load(folder / "brand.yaml")
    assert profile.rules.required_signoff == "Shine on, Lumen Lamps"
    assert profile.system_prompt
    report = json.loads((folder / "report.json").read_text())
    assert report["ok"] and report["stats"]["conversations"] == 18
    assert [b["slug"] for b in ws.brands()] == ["lumen-lamps"]


def test_prepare_redacts_pii_and_reports_samples(ws, tmp_path):
    src = tmp_path / "pii.jsonl"
    lines = (ASSETS / "conversations.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["messages"][0]["content"] += " Reach me at jo.bloggs@example.com or +44 7700 900123."
    src.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    result = prepare(ws, "Lumen Lamps", [src], GUIDE)
    assert result.ok
    assert result.pii["counts"] == {"EMAIL": 1, "PHONE": 1}
    assert any(
        "@example.com" in s["before"] and "<EMAIL>" in s["after"] for s in result.pii["samples"]
    )
    # Review samples are masked: the report on disk never holds the redacted values.
    assert "jo.bloggs" not in (result.brand_dir / "report.json").read_text()
    text = (result.brand_dir / "conversations.jsonl").read_text()
    assert "jo.bloggs" not in text and "<EMAIL>" in text and "<PHONE>" in text


def _with_pii(tmp_path: Path) -> Path:
    """The test brand's conversations, the first with an e-mail address and a phone number."""
    src = tmp_path / "pii.jsonl"
    lines = (ASSETS / "conversations.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["messages"][0]["content"] += " Reach me at jo.bloggs@example.com or +44 7700 900123."
    src.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    return src


def test_a_redaction_timeout_fails_closed(ws, tmp_path, monkeypatch):
    """presidio skips a regex that times out; the conversation must not pass through unchecked."""
    import presidio_analyzer.pattern_recognizer

    monkeypatch.setattr(presidio_analyzer.pattern_recognizer, "REGEX_TIMEOUT_SECONDS", 0)
    src = _with_pii(tmp_path)
    result = prepare(ws, "Lumen Lamps", [src], GUIDE)
    assert not result.ok and result.brand_dir is None
    [error] = [e for e in result.report.errors if e.code == "pii_unchecked"]
    assert "could not check for personal data" in error.message
    assert (error.file, error.location, error.field) == ("pii.jsonl", "line 1", "turn 1")
    assert not ws.brand_dir("lumen-lamps").exists()

    # Skipping broken records leaves that conversation out; the others are written.
    result = prepare(ws, "Lumen Lamps", [src], GUIDE, PrepareConfig(skip_invalid=True))
    assert result.ok and result.report.stats["conversations"] == 13
    assert any(w.code == "pii_unchecked" for w in result.report.warnings)
    for name in ("conversations.jsonl", "train.jsonl", "eval.jsonl", "report.json"):
        assert "jo.bloggs" not in (result.brand_dir / name).read_text(), name


def test_redaction_can_be_turned_off(ws, tmp_path):
    src = tmp_path / "pii.jsonl"
    lines = (ASSETS / "conversations.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["messages"][0]["content"] += " jo.bloggs@example.com"
    src.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    result = prepare(ws, "Lumen Lamps", [src], GUIDE, PrepareConfig(redact_pii=False))
    assert result.ok and result.pii["enabled"] is False and result.pii["counts"] == {}
    assert "jo.bloggs@example.com" in (result.brand_dir / "conversations.jsonl").read_text()


def test_errors_block_writing_and_keep_the_previous_version(ws, tmp_path):
    assert prepare(ws, "Lumen Lamps", FILES, GUIDE).ok
    before = (ws.brand_dir("lumen-lamps") / "conversations.jsonl").read_bytes()
    broken = tmp_path / "broken.jsonl"
    broken.write_text((ASSETS / "conversations.jsonl").read_text() + '{"messages": [oops\n')
    result = prepare(ws, "Lumen Lamps", [broken], GUIDE)
    assert not result.ok and result.brand_dir is None
    assert any(e.file == "broken.jsonl" and e.location == "line 15" for e in result.report.errors)
    assert (ws.brand_dir("lumen-lamps") / "conversations.jsonl").read_bytes() == before


def test_skip_invalid_leaves_broken_records_out(ws, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text((ASSETS / "conversations.jsonl").read_text() + '{"messages": [oops\n')
    result = prepare(ws, "Lumen Lamps", [broken], GUIDE, PrepareConfig(skip_invalid=True))
    assert result.ok and result.report.stats["conversations"] == 14
    assert any("line 15" in str(w) and "(skipped)" in str(w) for w in result.report.warnings)


def test_too_few_conversations_is_an_error(ws, tmp_path):
    few = tmp_path / "few.jsonl"
    few.write_text("\n".join((ASSETS / "conversations.jsonl").read_text().splitlines()[:5]) + "\n")
    result = prepare(ws, "Lumen Lamps", [few], GUIDE)
    assert not result.ok and [e.code for e in result.report.errors] == ["too_few"]


def test_unreadable_file_raises_a_clear_error(ws, tmp_path):
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(InputError, match="junk.jsonl"):
        prepare(ws, "Lumen Lamps", [junk], GUIDE)
    assert not ws.brand_dir("lumen-lamps").exists()


def test_edited_brand_yaml_survives_a_rerun_with_the_same_guide(ws):
    prepare(ws, "Lumen Lamps", FILES, GUIDE)
    path = ws.brand_dir("lumen-lamps") / "brand.yaml"
    profile = BrandProfile.load(path)
    profile.system_prompt = "Edited by the brand team."
    profile.save(path)
    prepare(ws, "Lumen Lamps", FILES, GUIDE)
    assert BrandProfile.load(path).system_prompt == "Edited by the brand team."


def test_changed_guide_regenerates_rules_and_keeps_the_old_file(ws, tmp_path):
    prepare(ws, "Lumen Lamps", FILES, GUIDE)
    path = ws.brand_dir("lumen-lamps") / "brand.yaml"
    profile = BrandProfile.load(path)
    profile.system_prompt = "Edited by the brand team."
    profile.save(path)
    guide = tmp_path / "guide.md"
    shutil.copy(GUIDE, guide)
    guide.write_text(GUIDE.read_text() + '\n- Never say "cheap".\n')
    prepare(ws, "Lumen Lamps", FILES, guide)
    assert "cheap" in [p.lower() for p in BrandProfile.load(path).rules.banned_phrases]
    old = BrandProfile.load(path.with_name("brand.previous.yaml"))
    assert old.system_prompt == "Edited by the brand team."


def _convs(n: int) -> list[Conversation]:
    return [Conversation([Turn("user", f"q{i}"), Turn("assistant", f"a{i}")]) for i in range(n)]


def test_split_is_fixed_and_stable_when_data_grows():
    convs = _convs(100)
    train, evals = split_train_eval(convs, 0.1, 2, seed=0)
    assert len(evals) == 10 and len(train) == 90
    again_train, again_eval = split_train_eval(list(reversed(convs)), 0.1, 2, seed=0)
    assert {c.key() for c in again_eval} == {c.key() for c in evals}
    _, grown_eval = split_train_eval(convs + _convs(110)[100:], 0.1, 2, seed=0)
    # Growing the data never moves an eval conversation into train.
    assert {c.key() for c in evals} - {c.key() for c in grown_eval} == set() or len(grown_eval) > 10
    assert split_train_eval(_convs(10), 0.1, 2, seed=0)[1].__len__() == 2


def _long_conversation(counter, tokens: int) -> dict:
    """An OpenAI-format conversation of about `tokens` tokens, as `counter` counts them."""
    sentence = "Our desk lamps glow warm and bright, and every one ships with a spare bulb. "
    for n in range(1, 200):
        messages = [
            {"role": "user", "content": "Tell me everything about your desk lamps."},
            {"role": "assistant", "content": sentence * n + "Shine on, Lumen Lamps"},
        ]
        conv = Conversation([Turn(m["role"], m["content"]) for m in messages], "x", "")
        if counter([conv])[0][0] >= tokens:
            return {"messages": messages}
    raise AssertionError("the sentence never reached the length")


def test_a_conversation_longer_than_the_presets_length_is_warned_at_prepare(
    ws, tmp_path, tiny_model_dir
):
    from transformers import AutoTokenizer

    from chatbot.config import TrainConfig
    from chatbot.prepare.validation import tokenizer_counter

    counter = tokenizer_counter(AutoTokenizer.from_pretrained(tiny_model_dir))
    quick = TrainConfig.from_preset("quick").max_length
    assert quick == 512
    data = tmp_path / "long.jsonl"
    lines = (ASSETS / "conversations.jsonl").read_text().splitlines()
    lines.append(json.dumps(_long_conversation(counter, 600)))
    data.write_text("\n".join(lines) + "\n")

    result = prepare(ws, "Lumen Lamps", [data], GUIDE, PrepareConfig(), count_tokens=counter)
    [warning] = [w for w in result.report.warnings if w.code == "too_long"]
    assert (warning.file, warning.location) == ("long.jsonl", f"line {len(lines)}")
    tokens = int(warning.message.split("about ")[1].split(" tokens")[0])
    assert 600 <= tokens < 700
    assert "the quick preset reads the first 512" in warning.message
    assert "pick the balanced preset" in warning.message
    assert f"long.jsonl, line {len(lines)}: conversation is about" in str(warning)

    # Checked against the preset that reads 1024 tokens, the same file trains whole.
    again = prepare(
        ws, "Lumen Lamps", [data], GUIDE, PrepareConfig(preset="balanced"), count_tokens=counter
    )
    assert not [w for w in again.report.warnings if w.code == "too_long"]
