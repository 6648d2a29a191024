"""The browser app: `build_app(services)` composes one tab per module; `launch` serves it safely.

`brandvoice ui` (chatbot.cli) is the command that starts it.

Safe defaults: the server listens on 127.0.0.1 only, asks for a password when one is set in
$BRANDVOICE_PASSWORD (and refuses to listen beyond this machine without one), keeps no chat history
in the browser, sends no analytics, serves no files but the workspace's exports and Gradio's own
upload cache, caps upload size and queue length, and shows readable messages instead of stack
traces.
"""

from __future__ import annotations

import logging
import os

import gradio as gr

from chatbot.errors import BrandVoiceError
from ui import brand_tab, check_tab, compare_tab, export_tab, scorecard_tab, train_tab
from ui.errors import user_errors
from ui.services import Services
from ui.theme import CSS, PRODUCT_NAME, header_html, make_theme

__all__ = ["build_app", "launch", "launch_options", "PASSWORD_ENV", "USERNAME_ENV"]

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
        title=PRODUCT_NAME,
        analytics_enabled=False,
        delete_cache=UPLOAD_RETENTION,
        fill_width=True,
    ) as app:
        with gr.Row(elem_id="bv-header", equal_height=True):
            with gr.Column(scale=3, elem_classes="bv-logo-col"):
                header = gr.HTML(header_html(None))
            with gr.Column(scale=1, min_width=240):
                brand = gr.Dropdown(label="Brand", choices=[], interactive=True)
        with gr.Tabs():
            with gr.Tab("Brand", id="brand") as brand_page:
                brand_tab.build(services, brand, brand_page)
            with gr.Tab("Train", id="train") as train:
                train_tab.build(services, brand, train)
            with gr.Tab("Compare", id="compare") as compare:
                compare_tab.build(services, brand, compare)
            with gr.Tab("Scorecard", id="scorecard") as scorecard:
                scorecard_tab.build(services, brand, scorecard)
            with gr.Tab("Check", id="check") as check:
                check_tab.build(services, brand, check)
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


def launch_options(
    services: Services,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    username: str | None = None,
    password: str | None = None,
    max_file_size: str = "200mb",
) -> dict:
    """The keyword arguments `launch` passes to `Blocks.launch`, decided in one place.

    The password comes from `password`, else $BRANDVOICE_PASSWORD; the user name from `username`,
    else $BRANDVOICE_USERNAME, else "brandvoice". Listening beyond loopback without a password is
    refused.
    """
    password = password or os.environ.get(PASSWORD_ENV) or None
    username = username or os.environ.get(USERNAME_ENV) or "brandvoice"
    if host not in LOOPBACK and not password:
        raise BrandVoiceError(
            f"Refusing to listen on {host} without a password: anyone on the network could "
            f"read and change your brand data. Set {PASSWORD_ENV}, or use 127.0.0.1."
        )
    ws = services.workspace
    services.exports_dir.mkdir(parents=True, exist_ok=True)
    return {
        "server_name": host,
        "server_port": port,
        "auth": (username, password) if password else None,
        "auth_message": "Sign in to brandvoice." if password else None,
        "share": False,
        "ssr_mode": False,  # server-side rendering: a security fix only landed in Gradio 6.32
        "run_history": False,  # otherwise every chat message is kept in the browser's storage
        "footer_links": [],
        "show_error": False,  # unexpected errors: a generic message in the browser, details here
        "max_file_size": max_file_size,
        # Downloads come from exports/ only; the rest of the workspace is blocked even if a
        # handler ever returned a path inside it.
        "allowed_paths": [str(services.exports_dir.resolve())],
        "blocked_paths": [
            str(p.resolve()) for p in (ws.root / "brands", ws.root / "runs", ws.db_path)
        ],
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
    queue_size: int = 32,
    block: bool = True,
) -> gr.Blocks:
    """Serve the app. With `block=False` it returns the running Blocks (call `.close()`)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    options = launch_options(
        services, host, port, username=username, password=password, max_file_size=max_file_size
    )
    app = build_app(services)
    # Chat streams have their own limit of one (a single model); other actions run two at a time.
    app.queue(default_concurrency_limit=2, max_size=queue_size, api_open=False)
    log.info("brandvoice at http://%s:%d (workspace %s)", host, port, services.workspace.root)
    # quiet: Gradio's own banner suggests a public share link, which this app never offers.
    app.launch(**options, prevent_thread_lock=not block, quiet=True)
    return app
