"""A marketer's path through the app in real Chromium, mistakes included.

A new brand from conversations alone (no style guide), a file that is not text and then the right
one, the voice rules edited as a form (with a mistake, then fixed), a short training run on the
tiny model, Compare with a vote, the quick scorecard that appears by itself, and Export with its
estimate and the going-live steps. After every mistake the test checks that the message is beside
its cause and that inputs and earlier reports are still on screen (no "Error" badges). A
screenshot of each step is saved as artifacts/walk-NN-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_support import ASSETS, chromium_page, served, short_run

from chatbot.feedback.votes import list_votes
from ui import Services

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
I18N_KEY = re.compile(r"^[a-z_]+\.[a-z_]+$")

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[str, Services]]:
    """The app as `brandvoice ui` wires it (quick scorecards included), on the tiny model."""
    workspace = tmp_path_factory.mktemp("walk-workspace")
    services = Services.create(workspace, base_model=str(tiny_model_dir))
    services.start_run = short_run
    with served(services) as url:
        yield url, services


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with chromium_page() as page:
        yield page


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(400)  # transitions
    page.screenshot(path=str(ARTIFACTS / f"walk-{name}.png"), full_page=True)


def _tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _no_error_badges(page: Page) -> None:
    """Gradio marks every output of a failed event with an "Error" badge; none may show."""
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)


_RECORD_ANNOUNCEMENTS = """
window.__announced = [];
new MutationObserver((changes) => {
  for (const change of changes) {
    const node = change.target.nodeType === 1 ? change.target : change.target.parentElement;
    const region = node && node.closest ? node.closest("[aria-live]") : null;
    const text = region ? region.textContent.trim() : "";
    if (text) window.__announced.push(text);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def _no_i18n_keys(page: Page) -> None:
    """Nothing a screen reader reads may be an untranslated key such as "common.complete":
    neither a label nor anything announced in a live region during the walk."""
    labels = page.evaluate(
        "() => [...document.querySelectorAll('[aria-label]')]"
        ".map(e => e.getAttribute('aria-label'))"
    )
    announced = page.evaluate("() => window.__announced")
    assert announced, "the walk announced nothing: the recorder did not run"
    keys = [text for text in [*labels, *announced] if I18N_KEY.match(text.strip())]
    assert not keys, f"untranslated keys read out to screen readers: {sorted(set(keys))}"


def _upload(page: Page, box: str, files: list[Path]) -> None:
    page.locator(f"{box} input[type=file]").first.set_input_files([str(f) for f in files])
    expect(page.locator(box)).to_contain_text(files[-1].stem)


def _brand(page: Page, tmp_path: Path) -> None:
    name = page.get_by_label("Brand name")
    name.fill("Lumen Lamps")
    # A spreadsheet saved with a .jsonl name: binary, not text.
    broken = tmp_path / "chats.jsonl"
    broken.write_bytes(bytes(range(256)) * 8)
    _upload(page, "#bv-conversations", [broken])
    page.get_by_role("button", name="Check and prepare").click()
    problem = page.locator("#bv-brand-problem")
    expect(problem).to_contain_text("isn't text", timeout=60_000)
    expect(problem).to_contain_text("chats.jsonl")
    expect(problem).not_to_contain_text("NUL")
    expect(name).to_be_visible()
    expect(name).to_have_value("Lumen Lamps")
    _no_error_badges(page)
    _shot(page, "01-brand-broken-file")

    # The right files, and no style guide: the rules come from the conversations.
    _upload(page, "#bv-conversations", [ASSETS / "conversations.jsonl", ASSETS / "tickets.csv"])
    page.get_by_role("button", name="Check and prepare").click()
    expect(page.get_by_text("Lumen Lamps is ready to train")).to_be_visible(timeout=90_000)
    expect(problem).to_have_text("")
    expect(page.locator("#bv-header")).to_contain_text("Lumen Lamps")
    _shot(page, "02-brand-ready")


def _rules(page: Page) -> None:
    page.get_by_role("tab", name="Voice rules").click()
    banned = page.get_by_label("Never say")
    expect(banned).to_be_visible()
    banned.press_sequentially("no worries", delay=20)  # typed, as a person does
    preview = page.locator("#bv-prompt-preview")
    expect(preview).to_contain_text('Never say "no worries"', timeout=20_000)
    terms = page.get_by_label("Say this, not that")
    terms.press_sequentially("lamp shade", delay=20)  # no "not ...": a mistake
    page.get_by_role("button", name="Save rules").click()
    message = page.locator("#bv-rules-message")
    expect(message).to_contain_text("Say this, not that, line 1", timeout=20_000)
    expect(terms).to_be_visible()
    expect(terms).to_have_value("lamp shade")
    expect(banned).to_have_value("no worries")
    _no_error_badges(page)
    _shot(page, "03-rules-mistake")
    terms.press_sequentially(", not lampshade", delay=20)
    expect(preview).to_contain_text('"lamp shade", not "lampshade"', timeout=20_000)
    page.get_by_role("button", name="Save rules").click()
    expect(message).to_contain_text("Saved", timeout=20_000)
    _shot(page, "04-rules-saved")


def _train(page: Page) -> None:
    _tab(page, "Train")
    page.get_by_role("button", name="Start training").click()
    progress = page.locator(".bv-progress")
    expect(progress).to_have_attribute("data-state", "succeeded", timeout=180_000)
    expect(page.locator(".bv-voice-match")).to_contain_text("Voice match")
    status = page.locator("#bv-train-status")
    for word in ("eval loss", "tokens/s", "epoch"):  # technical terms only under Details
        expect(status).not_to_contain_text(word)
    _shot(page, "05-train")


def _compare(page: Page, services: Services) -> None:
    _tab(page, "Compare")
    expect(page.locator("#bv-compare-model-note")).to_contain_text("preview", timeout=20_000)
    page.get_by_role("button", name="Send to both").click()  # nothing typed: a mistake
    expect(page.get_by_text("Type a message for both assistants first.")).to_be_visible()
    _no_error_badges(page)
    box = page.get_by_placeholder("Write as a customer would")
    box.fill("My lamp shade arrived dented, what can you do?")
    page.get_by_role("button", name="Send to both").click()
    expect(page.get_by_role("button", name="It's a tie")).to_be_enabled(timeout=90_000)
    _shot(page, "06-compare")
    page.get_by_role("button", name="A is better").click()
    expect(page.get_by_text("Vote saved")).to_be_visible()
    assert [v.verdict for v in list_votes(services.workspace)] == ["left"]


def _scorecard(page: Page) -> None:
    _tab(page, "Scorecard")
    # Made in the background once the run finished; no button pressed.
    status = page.locator("#bv-scorecard-status")
    expect(status).to_contain_text("Quick scorecard:", timeout=180_000)
    expect(page.locator("#bv-scorecard-summary")).to_contain_text("Sounds like your brand")
    expect(page.get_by_role("button", name="Run full scorecard")).to_be_visible()
    _shot(page, "07-scorecard")


def _export(page: Page) -> None:
    _tab(page, "Export")
    expect(page.get_by_text("Estimated time")).to_be_visible(timeout=20_000)  # before it starts
    expect(page.get_by_text("Going live, in three steps")).to_be_visible()
    _shot(page, "08-export-before")
    expect(page.locator("#bv-golive-command")).to_contain_text("vllm serve")
    expect(page.locator("#bv-export-model-note")).to_contain_text("small preview model")
    page.get_by_role("button", name="Create adapter zip").click()
    expect(page.locator(".bv-download a[download]").first).to_be_visible(timeout=240_000)
    expect(page.locator("#bv-export-info")).to_contain_text("is ready")
    _no_error_badges(page)
    _shot(page, "09-export-done")


def test_a_marketer_walks_the_whole_app(
    app: tuple[str, Services], page: Page, tmp_path: Path
) -> None:
    url, services = app
    page.add_init_script(_RECORD_ANNOUNCEMENTS)
    page.goto(url)
    expect(page.get_by_text("No brand prepared yet")).to_be_visible(timeout=180_000)
    _shot(page, "00-start")
    try:
        _brand(page, tmp_path)
        _rules(page)
        _train(page)
        _compare(page, services)
        _scorecard(page)
        _export(page)
        _no_i18n_keys(page)
    except BaseException:
        _shot(page, "failure")
        raise
