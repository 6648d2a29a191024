"""What the browser tests share: the app on a free port, a Chromium page, a short training run."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chatbot.config import TrainConfig
from chatbot.runs.jobs import Run, cancel_run, list_runs, start_run
from chatbot.workspace import Workspace
from ui import Services, launch

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets" / "brand"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TRAIN_STEPS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_run(ws: Workspace, brand: str, config: TrainConfig, *, preset: str = "") -> Run:
    """The real job runner, with the run cut to a few small steps to keep the test short."""
    short = dataclasses.replace(config, max_steps=TRAIN_STEPS, batch_size=2, max_length=256)
    return start_run(ws, brand, short, preset=preset)


@contextmanager
def served(services: Services) -> Iterator[str]:
    """The app over `services` on a free port (its URL); runs left going are cancelled after."""
    port = free_port()
    blocks = launch(services, port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        blocks.close()
        for run in list_runs(services.workspace):
            if not run.done:
                cancel_run(services.workspace, run.id, timeout=10)


@contextmanager
def chromium_page(**context: Any) -> Iterator[Page]:
    """A page in Debian's Chromium, 1360×1000 unless `context` says otherwise."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1360, "height": 1000}, **context).new_page()
        try:
            yield page
        finally:
            browser.close()
