"""The whole product in a real browser: prepare a brand, train it, compare, vote, export.

Runs the real stack (prepare, a training worker process, the chat engine) on the test brand and a
small base model, driven through Chromium with Playwright. Screenshots of every tab are saved to
artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_support import ASSETS, ROOT, chromium_page, served, short_run

from chatbot.feedback.votes import list_votes
from ui import Services

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TRAIN_TIMEOUT_MS = 150_000

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[str, Services]]:
    """The app on the tiny base model (trained and chatted with for real), on a free port."""
    workspace = tmp_path_factory.mktemp("workspace")
    services = Services.create(workspace, base_model=str(tiny_model_dir))
    services.start_run = short_run
    with served(services) as url:
        yield url, services


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with chromium_page(accept_downloads=True) as page:
        yield page


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _prepare_brand(page: Page) -> None:
    page.get_by_label("Brand name").fill("Lumen Lamps")
    conversations = [str(ASSETS / "conversations.jsonl"), str(ASSETS / "tickets.csv")]
    page.locator("#bv-conversations input[type=file]").first.set_input_files(conversations)
    expect(page.locator("#bv-conversations")).to_contain_text("tickets")
    page.locator("#bv-style-guide input[type=file]").set_input_files(str(ASSETS / "style_guide.md"))
    expect(page.locator("#bv-style-guide")).to_contain_text("style_guide")
    page.get_by_role("button", name="Check and prepare").click()
    expect(page.get_by_text("Lumen Lamps is ready to train")).to_be_visible(timeout=60_000)
    expect(page.locator(".bv-table").first).to_contain_text("Brand replies")
    expect(page.locator("#bv-header")).to_contain_text("Lumen Lamps")
    _shot(page, "1-brand")


def _train(page: Page, url: str) -> None:
    _open_tab(page, "Train")
    expect(page.get_by_text("No training runs yet")).to_be_visible()
    page.get_by_role("button", name="Start training").click()
    progress = page.locator(".bv-progress")
    expect(progress).to_have_attribute("data-state", "running", timeout=30_000)
    run_id = progress.get_attribute("data-run")
    # A reload re-attaches to the job: what the tab shows comes from the workspace, not the page.
    page.goto(url)
    _open_tab(page, "Train")
    expect(page.locator(f'.bv-progress[data-run="{run_id}"]')).to_be_visible(timeout=20_000)
    expect(progress).to_have_attribute("data-state", "succeeded", timeout=TRAIN_TIMEOUT_MS)
    bar = page.locator(".bv-progress")
    assert bar.get_attribute("data-step") == bar.get_attribute("data-total") != "0"
    expect(page.get_by_text("100%")).to_be_visible()
    page.wait_for_timeout(1500)  # let the bar's and the plot's transitions finish
    _shot(page, "2-train")


def _compare_and_vote(page: Page, services: Services) -> None:
    _open_tab(page, "Compare")
    box = page.get_by_placeholder("Write as a customer would")
    expect(box).to_be_visible(timeout=20_000)
    box.fill("My lamp shade arrived dented, what can you do?")
    page.get_by_role("button", name="Send to both").click()
    tie = page.get_by_role("button", name="It's a tie")
    expect(tie).to_be_enabled(timeout=90_000)
    replies = page.locator(".bv-panes [data-testid=bot]")
    expect(replies).to_have_count(2)
    for i in range(2):
        assert replies.nth(i).inner_text().strip(), "both sides must have replied"
    _shot(page, "3-compare")
    page.get_by_role("button", name="A is better").click()
    expect(page.get_by_text("Vote saved")).to_be_visible()
    [vote] = list_votes(services.workspace)
    assert (vote.left_system, vote.right_system, vote.verdict) == ("base", "tuned", "left")
    assert vote.prompt.startswith("My lamp shade") and vote.left_reply and vote.right_reply
    assert vote.run_id and vote.settings.get("max_new_tokens")


def _stop_both(page: Page) -> None:
    """A long reply, stopped on both sides: voting opens without waiting for the ends."""
    page.get_by_text("Details: reply settings").click()
    page.get_by_label("number input for Longest reply (tokens)").fill("1024")
    page.get_by_label("number input for Longest reply (tokens)").press("Enter")
    page.get_by_placeholder("Write as a customer would").fill("Tell me everything about lamps.")
    page.get_by_role("button", name="Send to both").click()
    for name in ("Stop A", "Stop B"):
        button = page.get_by_role("button", name=name)
        expect(button).to_be_enabled(timeout=30_000)
        button.click()
    expect(page.get_by_role("button", name="It's a tie")).to_be_enabled(timeout=30_000)
    expect(page.get_by_text("You stopped A and B")).to_be_visible()


def _export(page: Page, tmp_path: Path) -> None:
    _open_tab(page, "Export")
    page.get_by_role("button", name="Create adapter zip").click()
    link = page.locator(".bv-download a[download]").first
    # The check in a fresh process shares the CPU with the quick scorecard made after training.
    expect(link).to_be_visible(timeout=120_000)
    expect(page.locator("#bv-export-info")).to_contain_text("is ready")
    page.wait_for_timeout(500)  # the finished event's fade-in
    _shot(page, "4-export")
    with page.expect_download() as download:
        link.click()
    target = tmp_path / download.value.suggested_filename
    download.value.save_as(target)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
    assert "adapter_config.json" in names and any(n.endswith(".safetensors") for n in names)


def test_prepare_train_compare_vote_export(
    app: tuple[str, Services], page: Page, tmp_path: Path
) -> None:
    url, services = app
    page.goto(url)
    # The first load builds every tab; on a busy 2-core machine that took over a minute.
    expect(page.get_by_text("No brand prepared yet")).to_be_visible(timeout=180_000)
    _shot(page, "0-empty")
    try:
        _prepare_brand(page)
        _train(page, url)
        _compare_and_vote(page, services)
        _export(page, tmp_path)
    except BaseException:
        _shot(page, "failure")  # what the page showed when the test gave up
        raise


def test_stopping_both_panes_opens_voting(app: tuple[str, Services], page: Page) -> None:
    """Runs after the walk above (same app and page): the brand has a finished run."""
    _open_tab(page, "Compare")
    try:
        _stop_both(page)
    except BaseException:
        _shot(page, "stop-failure")
        raise
