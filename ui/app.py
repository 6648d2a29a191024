"""The browser app: `build_app(services)` composes one tab per module; `launch` serves it safely.

Safe defaults: the server listens on 127.0.0.1 only, asks for a password when one is set in
$BRANDVOICE_PASSWORD (and refuses to listen beyond this machine without one), keeps no chat history
in the browser, sends no analytics, serves no files but the workspace's exports and Gradio's own
upload cache, caps upload size and queue length, and shows readable messages instead of stack
traces.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import gradio as gr

from chatbot.errors import BrandVoiceError
from ui import brand_tab, compare_tab, export_tab, train_tab
from ui.errors import user_errors
from ui.services import Services
from ui.theme import CSS, PRODUCT_NAME, header_html, make_theme

__all__ = ["build_app", "launch", "LaunchSettings", "PASSWORD_ENV", "USERNAME_ENV"]

log = logging.getLogger("brandvoice.ui")

PASSWORD_ENV = "BRANDVOICE_PASSWORD"
USERNAME_ENV = "BRANDVOICE_USERNAME"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Uploaded files (raw conversations, with personal data not yet redacted) stay in Gradio's cache
# for at most this long: (how often to sweep, how old a file may get), in seconds.
UPLOAD_RETENTION = (900, 3600)


def _brand_picker_update(services: Services, current: str | None) -> tuple:
    choices = brand_tab.brand_choices(services)
    slugs = [slug for _, slug in choices]
    value = current if current in slugs else (slugs[0] if slugs else None)
    return gr.update(choices=choices, value=value), header_html(_name(choices, value))


def _name(choices: list[tuple[str, str]], slug: str | None) -> str | None:
    return next((name for name, s in choices if s == slug), None)


def build_app(services: Services) -> gr.Blocks:
    """The whole app over one Services; no state outside it, so tests can build many."""
    with gr.Blocks(
        title=PRODUCT_NAME, analytics_enabled=False, delete_cache=UPLOAD_RETENTION
    ) as app:
        with gr.Row(elem_id="bv-header", equal_height=True):
            header = gr.HTML(header_html(None), scale=4)
            brand = gr.Dropdown(
                label="Brand", choices=[], scale=1, min_width=220, interactive=True
            )
        with gr.Tabs():
            with gr.Tab("Brand", id="brand") as brand_page:
                brand_tab.build(services, brand, brand_page)
            with gr.Tab("Train", id="train") as train:
                train_tab.build(services, brand, train)
            with gr.Tab("Compare", id="compare") as compare:
                compare_tab.build(services, brand, compare)
            with gr.Tab("Export", id="export") as export:
                export_tab.build(services, brand, export)

        refresh = user_errors(lambda slug: _brand_picker_update(services, slug))
        app.load(refresh, brand, [brand, header], show_progress="hidden")
        brand.change(
            lambda slug: header_html(_name(brand_tab.brand_choices(services), slug)),
            brand,
            header,
            show_progress="hidden",
        )
    return app


class LaunchSettings:
    """The server settings `launch` passes to Gradio, computed in one place (and testable)."""

    def __init__(
        self,
        services: Services,
        host: str = "127.0.0.1",
        port: int = 7860,
        *,
        username: str | None = None,
        password: str | None = None,
        max_file_size: str = "200mb",
        queue_size: int = 32,
    ) -> None:
        self.host, self.port = host, port
        password = password if password is not None else os.environ.get(PASSWORD_ENV) or None
        username = username or os.environ.get(USERNAME_ENV) or "brandvoice"
        if host not in LOOPBACK and not password:
            raise BrandVoiceError(
                f"Refusing to listen on {host} without a password: anyone on the network could "
                f"read and change your brand data. Set {PASSWORD_ENV}, or use 127.0.0.1."
            )
        self.auth = (username, password) if password else None
        exports = services.exports_dir
        exports.mkdir(parents=True, exist_ok=True)
        ws = services.workspace.root
        self.allowed_paths = [str(exports.resolve())]
        # Nothing in the workspace but exports/ may ever be served, whatever a handler returns.
        self.blocked_paths = [
            str(p.resolve())
            for p in (ws / "brands", ws / "runs", services.workspace.db_path)
        ]
        self.max_file_size = max_file_size
        self.queue_size = queue_size

    def launch_kwargs(self) -> dict:
        return {
            "server_name": self.host,
            "server_port": self.port,
            "auth": self.auth,
            "auth_message": "Sign in to brandvoice." if self.auth else None,
            "share": False,
            "ssr_mode": False,  # server-side rendering: a security fix only landed in Gradio 6.32
            "run_history": False,  # otherwise every chat message is kept in the browser storage
            "footer_links": [],
            "show_error": False,  # unexpected errors: generic message in the browser, log here
            "max_file_size": self.max_file_size,
            "allowed_paths": self.allowed_paths,
            "blocked_paths": self.blocked_paths,
            "enable_monitoring": False,
            "mcp_server": False,
            "pwa": False,
            "theme": make_theme(),
            "css": CSS,
        }


def launch(
    services: Services,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    username: str | None = None,
    password: str | None = None,
    max_file_size: str = "200mb",
    block: bool = True,
) -> gr.Blocks:
    """Serve the app. Returns the running Blocks when `block` is False (tests close it)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings = LaunchSettings(
        services, host, port, username=username, password=password, max_file_size=max_file_size
    )
    app = build_app(services)
    # One chat model generates at a time (its own concurrency group); other actions two at a time.
    app.queue(default_concurrency_limit=2, max_size=settings.queue_size, api_open=False)
    log.info("brandvoice at http://%s:%d (workspace %s)", host, port, services.workspace.root)
    app.launch(**settings.launch_kwargs(), prevent_thread_lock=not block, quiet=not block)
    return app


def main(argv: list[str] | None = None) -> int:
    """`python -m ui.app [--workspace DIR] [--host H] [--port P]`."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m ui.app", description="the brandvoice browser app")
    p.add_argument("--workspace", type=Path, default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        launch(Services.create(args.workspace), args.host, args.port)
    except BrandVoiceError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
