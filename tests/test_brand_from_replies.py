"""A brand without a style guide: rules read from its own replies, prepared, trained and chatted."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from chatbot.brand import AddressRule, BrandProfile, BrandRules
from chatbot.brand_from_replies import derive_profile, derive_rules
from chatbot.cli import main
from chatbot.prepare import prepare
from chatbot.rule_check import check_reply
from chatbot.types import Conversation, Turn
from chatbot.voice_match import run_voice_match
from chatbot.workspace import Workspace

ASSETS = Path(__file__).parent / "assets" / "brand"
GUIDE = ASSETS / "style_guide.md"

# A bakery that greets by first name, signs off over two lines and uses only two emoji.
BAKERY = [
    "Hi Maya, your sourdough is in the oven and leaves at 3pm ☕\nWarm crumbs,\nMaple Bakery",
    "Hi Tom, we can swap the rye for a seeded loaf, no charge. Warm crumbs,\nMaple Bakery",
    "Hi Priya, sorry the croissants were squashed! A fresh box is on its way 🥐\n"
    "Warm crumbs,\nMaple Bakery",
    "Hi Leo, the cinnamon buns are vegan and nut free. Warm crumbs,\nMaple Bakery",
    "Hi Ana, yes, we deliver on Sundays before noon ☕ Warm crumbs,\nMaple Bakery",
    "Hi Sam, your order changed to two baguettes and one brioche. Warm crumbs,\nMaple Bakery",
    "Hi Noor, gift cards never expire and work online too. Warm crumbs,\nMaple Bakery",
    "Thanks for asking! The shop opens at 7am on weekdays.",
]

# A plain-spoken hardware shop: the same opener, no emoji, no exclamation marks.
HARDWARE = [
    "Hello, the drill comes with two batteries and a charger. Thanks, Bolt & Co",
    "Hello, returns are free within 30 days if the tool is unused. Thanks, Bolt & Co",
    "Hello, the M8 bolts are back in stock from Monday. Thanks, Bolt & Co",
    "Hello, we cut timber to size in store while you wait. Thanks, Bolt & Co",
    "Hello, that saw blade fits the 2019 model and newer ones. Thanks, Bolt & Co",
    "Good question. Paint matching takes about ten minutes at the counter. Thanks, Bolt & Co",
]


def test_rules_from_a_bakerys_replies() -> None:
    derived = derive_rules(BAKERY)
    rules = derived.rules
    assert rules.required_signoff == "Warm crumbs, Maple Bakery"
    address = rules.address_customer
    assert (address.greeting, address.allow_first_name) == ("Hi <first name>,", True)
    assert rules.emoji.allowed == ["☕", "🥐"] and rules.emoji.max_per_reply == 1
    assert rules.max_exclamations == 1
    assert rules.length.max_words == 20  # the longest reply bar the sign-off: 14 words
    assert derived.replies == 8
    found = " | ".join(derived.found)
    assert "7 of 8 replies end with" in found and "☕ 🥐" in found
    # The rules fit the replies they came from: every signed reply passes every rule.
    for reply in BAKERY[:-1]:
        broken = [r for r in check_reply(rules, reply) if not r.passed]
        assert broken == [], (reply, broken)
    assert "Maya" not in json.dumps(rules.to_dict())  # a customer's name is never a rule


def test_rules_from_a_plain_shops_replies() -> None:
    derived = derive_rules(HARDWARE)
    rules = derived.rules
    assert rules.required_signoff == "Thanks, Bolt & Co"
    assert rules.address_customer.greeting == "Hello,"
    assert not rules.address_customer.allow_first_name
    assert (rules.emoji.max_per_reply, rules.emoji.allowed) == (0, [])
    assert rules.max_exclamations == 0
    found = " | ".join(derived.found)
    assert "Emoji: none in any reply" in found and "Exclamation marks: none" in found


def test_no_shared_habit_is_no_rule() -> None:
    replies = [
        "Sure, that ships today.",
        "We open at nine. See you then!",
        "Thanks for the photo 📷 we'll send a new one.",
        "Of course. The refund is on its way 😊",
        "Good news: it is back in stock.",
    ]
    rules = derive_rules(replies).rules
    assert rules.required_signoff is None
    assert rules.address_customer.greeting is None
    assert rules.emoji.max_per_reply == 1 and rules.emoji.allowed == ["📷", "😊"]


def test_openers_count_alike_whatever_their_mark() -> None:
    replies = [
        "Hello there, your lamp ships today.",
        "Hello there! Good news: it is back in stock.",
        "Hello there, the shade is linen.",
        "Hello there, we open at nine.",
        "Sure, the bulb is E14.",
    ]
    derived = derive_rules(replies)
    assert derived.rules.address_customer == AddressRule(greeting="Hello there,")
    assert 'Greeting: 4 of 5 replies open with "Hello there,"' in derived.found[0]


def test_first_names_under_different_greetings() -> None:
    replies = [
        "Hi Maya, your parcel left today.",
        "Hello Tom, the refund is on its way.",
        "Hey Sam, yes, we ship to Ireland.",
        "Dear Ana, thank you for the photo.",
        "Hi Leo, the kettle is back in stock.",
    ]
    derived = derive_rules(replies)
    assert derived.rules.address_customer == AddressRule(allow_first_name=True)
    assert "5 of 5 replies greet the customer by first name" in derived.found[0]
    prompt = derive_profile(
        [Conversation([Turn("user", "?"), Turn("assistant", r)]) for r in replies], "Acme"
    )[0].system_prompt
    assert "Address the customer by their first name." in prompt


def test_too_few_replies_give_no_rules() -> None:
    derived = derive_rules(HARDWARE[:3])
    assert derived.rules == BrandRules()
    assert "too few" in derived.found[0]


def test_the_derived_prompt_states_the_rules() -> None:
    convs = [Conversation([Turn("user", "question?"), Turn("assistant", r)]) for r in HARDWARE]
    profile, _ = derive_profile(convs, "Bolt & Co")
    prompt = profile.system_prompt
    assert prompt.startswith("You are the customer-care voice of Bolt & Co.")
    assert 'Start every reply with "Hello,"' in prompt and "Use no emoji." in prompt
    assert prompt.endswith('End every reply with "Thanks, Bolt & Co".')


# -- prepare without a guide -------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws")


def test_prepare_without_a_guide_derives_and_says_so(ws: Workspace) -> None:
    result = prepare(ws, "Lumen Lamps", [ASSETS / "conversations.jsonl", ASSETS / "tickets.csv"])
    assert result.ok and result.rules_source == "conversations"
    assert "No style guide was given" in result.rules_note
    folder = ws.brand_dir("lumen-lamps")
    assert not (folder / "style_guide.md").exists()
    profile = BrandProfile.load(folder / "brand.yaml")
    assert profile.rules.required_signoff == "Shine on, Lumen Lamps"
    assert profile.rules.address_customer.greeting == "Hello there,"
    assert profile.system_prompt.endswith('End every reply with "Shine on, Lumen Lamps".')
    report = json.loads((folder / "report.json").read_text())
    assert report["rules_source"] == "conversations"
    assert report["rules_note"] == result.rules_note
    assert any("Shine on, Lumen Lamps" in line for line in report["rules_found"])


def test_an_edited_derived_profile_survives_a_rerun(ws: Workspace) -> None:
    files = [ASSETS / "conversations.jsonl"]
    prepare(ws, "Lumen Lamps", files)
    path = ws.brand_dir("lumen-lamps") / "brand.yaml"
    # Unedited, it is derived afresh (from more data, here): still the derived rules.
    again = prepare(ws, "Lumen Lamps", [*files, ASSETS / "tickets.csv"])
    assert again.rules_source == "conversations" and again.rules_found
    profile = BrandProfile.load(path)
    profile.system_prompt = "Edited by the brand team."
    profile.save(path)
    kept = prepare(ws, "Lumen Lamps", files)
    assert kept.rules_source == "kept" and "kept as it is" in kept.rules_note
    assert BrandProfile.load(path).system_prompt == "Edited by the brand team."
    assert prepare(ws, "Lumen Lamps", files).rules_source == "kept"  # and the next time too


def test_a_guides_rules_are_kept_when_prepared_again_without_it(ws: Workspace) -> None:
    files = [ASSETS / "conversations.jsonl"]
    prepare(ws, "Lumen Lamps", files, GUIDE)
    folder = ws.brand_dir("lumen-lamps")
    before = (folder / "brand.yaml").read_text()
    result = prepare(ws, "Lumen Lamps", files)
    assert result.rules_source == "kept"
    assert (folder / "brand.yaml").read_text() == before
    assert (folder / "style_guide.md").read_text() == GUIDE.read_text()
    assert "valued customer" in BrandProfile.load(folder / "brand.yaml").rules.banned_phrases


def test_cli_prepare_without_a_style_guide(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "prepare",
            "--workspace",
            str(tmp_path),
            "--brand",
            "Lumen Lamps",
            "--conversations",
            str(ASSETS / "conversations.jsonl"),
            "--no-tokens",
        ]
    )
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert "No style guide was given" in out and "Shine on, Lumen Lamps" in out
    assert (tmp_path / "brands" / "lumen-lamps" / "brand.yaml").exists()


# -- trains and chats --------------------------------------------------------------------------


def test_a_brand_without_a_guide_trains_and_chats(tmp_path: Path, tiny_model_dir: Path) -> None:
    from job_support import tiny_config

    from chatbot.engine import ChatEngine, GenerationSettings
    from chatbot.training.run import TrainingRun

    ws = Workspace.open(tmp_path / "ws")
    assert prepare(ws, "Lumen Lamps", [ASSETS / "conversations.jsonl"]).ok
    brand_dir = ws.brand_dir("lumen-lamps")
    run_dir = tmp_path / "run"
    run = TrainingRun(run_dir, tiny_config(tiny_model_dir, max_steps=4), brand_dir, None, None)
    run.setup(resume=False)
    model = run.trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run.fit()
    after = dict(model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    assert lora
    for name, value in before.items():
        assert (not torch.equal(after[name].detach(), value)) == (name in lora), name
    metrics = run.finish()
    assert metrics["state"] == "succeeded"
    # The run's held-out losses, before and after, read as a voice match.
    match = run_voice_match(run_dir)
    assert match is not None
    assert match.ratio == pytest.approx(
        math.exp(metrics["eval_loss_before"] - metrics["eval_loss_after"])
    )
    # The derived system prompt is the one trained with and chatted with.
    prompt = (run_dir / "system_prompt.txt").read_text(encoding="utf-8")
    assert prompt == BrandProfile.load(brand_dir / "brand.yaml").system_prompt
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    engine = ChatEngine(
        tiny_model_dir,
        run_dir / "adapter",
        prompt,
        quantization="none",
        compute_dtype=torch.float32,
    )
    settings = GenerationSettings(temperature=0, max_new_tokens=8)
    messages = [{"role": "user", "content": "Where is my lamp?"}]
    assert "Shine on, Lumen Lamps" in engine.render_prompt(messages, "tuned", settings)
    # The tiny model's words mean nothing; that it answers in both modes is what is checked.
    tuned, base = (
        engine.reply(messages, "tuned", settings),
        engine.reply(messages, "base", settings),
    )
    assert tuned and base
