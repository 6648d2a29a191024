"""The Check tab in a real browser: paste a draft, see its score, sentences, fixes and the tuned
model's reply; upload texts and get a worst-first report.

Runs the real stack (the chat engine, the draft checker and its calibration) on the test brand and
a finished run on the tiny model, driven through Chromium with Playwright. A screenshot is saved to
artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_support import ROOT, chromium_page, served
from check_support import prepared_brand, record_run

from ui import Services

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
RUN_ID = "20260103-100000-c4ec4b"
CHECK_TIMEOUT_MS = 240_000  # the first check calibrates the run's scale

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[str]:
    """The app over a prepared brand with one finished run on the tiny model, on a free port."""
    ws = prepared_brand(tmp_path_factory.mktemp("check-browser") / "ws")
    record_run(ws, tiny_model_dir, RUN_ID)
    with served(Services.create(ws.root, base_model=str(tiny_model_dir))) as url:
        yield url


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with chromium_page() as page:
        yield page


def test_check_a_draft_and_audit_files(app: str, page: Page, tmp_path: Path) -> None:
    page.goto(app)
    try:
        page.get_by_role("tab", name="Check", exact=True).click()
        draft = page.locator("#bv-check-draft textarea")
        expect(draft).to_be_visible(timeout=30_000)
        draft.fill("Unfortunately your unit is late! We will send a new one ASAP.")
        page.get_by_label("Customer message it answers (optional)").fill("Where is my lamp?")
        page.get_by_role("button", name="Check draft").click()

        score = page.locator("#bv-check-result .bv-check-score")
        expect(score).to_be_visible(timeout=CHECK_TIMEOUT_MS)
        value = int(score.get_attribute("data-score"))
        assert 0 <= value <= 100
        expect(page.get_by_text("Sounds like the tuned model")).to_be_visible()
        sentences = page.locator("#bv-check-sentences")
        expect(sentences).to_contain_text("Unfortunately your unit is late!")
        expect(sentences).to_contain_text('breaks: uses "Unfortunately"')
        expect(page.locator("#bv-check-rules")).to_contain_text("banned_phrase:unfortunately")
        fixed = page.locator("#bv-check-fixed textarea")
        expect(fixed).to_have_value(
            "Hello there, your lamp is late! We will send a new one right away. "
            "Shine on, Lumen Lamps"
        )
        expect(page.locator("#bv-check-suggestion textarea")).not_to_have_value("")
        expect(page.get_by_text("held-out replies score")).to_be_visible()
        page.wait_for_timeout(500)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "5-check.png"), full_page=True)

        good = tmp_path / "good.txt"
        good.write_text("Hello there, it ships today. Shine on, Lumen Lamps", encoding="utf-8")
        bad = tmp_path / "bad.txt"
        bad.write_text("Unfortunately, per our policy, no!!!", encoding="utf-8")
        page.get_by_text("Audit many texts").click()
        page.locator("#bv-check-files input[type=file]").set_input_files([str(good), str(bad)])
        expect(page.locator("a[href$='/bad.txt']")).to_have_count(1, timeout=20_000)
        page.get_by_role("button", name="Check all, worst first").click()
        expect(page.get_by_text("Checked 2 texts, worst first")).to_be_visible(timeout=120_000)
        expect(page.locator("#bv-check-batch [role=gridcell]").first).to_have_text("bad.txt")
        expect(page.locator("a[href*='check-lumen-lamps-'][href$='.html']")).to_have_count(1)
        page.screenshot(path=str(SCREENSHOTS / "6-check-audit.png"), full_page=True)
    except BaseException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "check-failure.png"), full_page=True)
        raise
