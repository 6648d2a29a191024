"""The browser app: `build_app(services)` composes one tab per module; `launch` serves it safely.

`brandvoice ui` (chatbot.cli.commands) is the command that starts it.

Safe defaults: the server listens on 127.0.0.1 only, asks for a password when one is set in
$BRANDVOICE_PASSWORD (and refuses to listen beyond this machine without one), answers only to its
own host names and refuses requests from pages of other sites (`chatbot.serving.http_guard`), keeps
no chat history in the browser, sends no analytics, serves no files but the workspace's exports and
Gradio's own upload cache, keeps uploads in a private folder of the workspace and caps their size
per file, per browser session and per workspace (`ui.uploads`), caps queue length, and shows
readable messages instead of stack traces.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import gradio as gr
from starlette.middleware import Middleware

from chatbot.service import BrandVoiceError, RequestGuard, allowed_hosts, is_loopback
from ui import brand_tab, check_tab, compare_tab, export_tab, scorecard_tab, train_tab
from ui.errors import shown_in
from ui.services import Services
from ui.theme import CSS, PRODUCT_NAME, header_html, make_theme
from ui.uploads import UPLOADS, UploadQuota, app_upload_dir, remove_upload_dir

__all__ = [
    "build_app",
    "check_bind",
    "launch",
    "launch_options",
    "PASSWORD_ENV",
    "USERNAME_ENV",
    "SESSION_UPLOAD_BYTES",
    "WORKSPACE_UPLOAD_BYTES",
]

log = logging.getLogger("brandvoice.ui")

PASSWORD_ENV = "BRANDVOICE_PASSWORD"
USERNAME_ENV = "BRANDVOICE_USERNAME"
SESSION_UPLOAD_BYTES = 1 << 30
"""What one browser session may upload in all (each file may be up to `max_file_size`)."""
WORKSPACE_UPLOAD_BYTES = 2 << 30
"""What the workspace's upload folder may hold at once, for every app open on it."""
# Uploaded files (raw conversations, with personal data not yet redacted) stay in Gradio's cache
# for at most this long: (how often to sweep, how old a file may get), in seconds. Prepare deletes
# the files it has read at once, and the app deletes its folder when it stops.
UPLOAD_RETENTION = (900, 3600)


SCREEN_READER_TEXTS = {"common.complete": "Done"}
"""Texts Gradio's status announcements look up that its own English translations lack."""


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

        # A broken workspace on load: the header says so, the page stays usable.
        refresh = shown_in(lambda slug: _brand_picker_update(services, slug), outputs=2, at=1)
        app.load(refresh, brand, [brand, header], show_progress="hidden")
        brand.change(
            lambda slug: header_html(_name(brand_tab.brand_choices(services), slug)),
            brand,
            header,
            show_progress="hidden",
        )
    return app


def check_bind(host: str, password: str | None = None) -> None:
    """Refuse to listen beyond this machine without a password (`password` or the environment)."""
    if not is_loopback(host) and not (password or os.environ.get(PASSWORD_ENV)):
        raise BrandVoiceError(
            f"Refusing to listen on {host} without a password: anyone on the network could "
            f"read and change your brand data. Set {PASSWORD_ENV}, or use 127.0.0.1."
        )


def launch_options(
    services: Services,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    username: str | None = None,
    password: str | None = None,
    max_file_size: str = "200mb",
    allowed: Sequence[str] = (),
    session_upload_bytes: int = SESSION_UPLOAD_BYTES,
    workspace_upload_bytes: int = WORKSPACE_UPLOAD_BYTES,
) -> dict:
    """The keyword arguments `launch` passes to `Blocks.launch`, decided in one place.

    The password comes from `password`, else $BRANDVOICE_PASSWORD; the user name from `username`,
    else $BRANDVOICE_USERNAME, else "brandvoice". Listening beyond loopback without a password is
    refused. `allowed` are further host names the app answers to (see `chatbot.serving.http_guard`).
    """
    check_bind(host, password)
    password = password or os.environ.get(PASSWORD_ENV) or None
    username = username or os.environ.get(USERNAME_ENV) or "brandvoice"
    ws = services.workspace
    services.exports_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        # Gradio 6.31 announces a finished action to screen readers as "common.complete", a
        # key its English texts lack; this fills the gap.
        "i18n": gr.I18n(en=SCREEN_READER_TEXTS),
        # Outermost first: a request from another site is refused before it can upload.
        "app_kwargs": {
            "middleware": [
                Middleware(RequestGuard, hosts=allowed_hosts(host, allowed), origins=allowed),
                Middleware(
                    UploadQuota,
                    folder=ws.root / UPLOADS,
                    per_session=session_upload_bytes,
                    per_workspace=workspace_upload_bytes,
                ),
            ]
        },
    }


def launch(
    services: Services,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    username: str | None = None,
    password: str | None = None,
    max_file_size: str = "200mb",
    allowed: Sequence[str] = (),
    session_upload_bytes: int = SESSION_UPLOAD_BYTES,
    workspace_upload_bytes: int = WORKSPACE_UPLOAD_BYTES,
    queue_size: int = 32,
    block: bool = True,
    on_ready: Callable[[], None] | None = None,
) -> gr.Blocks | None:
    """Serve the app. With `block=False` it returns the running Blocks (call `.close()`).

    Blocking, it calls `on_ready` once the server answers, serves until Ctrl-C or SIGTERM, then
    stops, deletes its upload folder and returns the stopped Blocks (None if stopped while
    starting).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    options = launch_options(
        services,
        host,
        port,
        username=username,
        password=password,
        max_file_size=max_file_size,
        allowed=allowed,
        session_upload_bytes=session_upload_bytes,
        workspace_upload_bytes=workspace_upload_bytes,
    )
    uploads = app_upload_dir(services.workspace.root)
    # Gradio's file cache (where uploads land) is read from the environment when components are
    # created and when the server starts, so it is set before either.
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    if not block:
        try:
            app = _start(services, options, queue_size)
        except BaseException:
            remove_upload_dir(uploads)
            raise
        atexit.register(remove_upload_dir, uploads)
        return app
    app = None
    try:
        with _sigterm_as_interrupt():  # from the start: a stop while starting cleans up too
            app = _start(services, options, queue_size)
            if on_ready is not None:
                on_ready()
            while True:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if app is not None:
            app.close()
        remove_upload_dir(uploads)
    return app


def _start(services: Services, options: dict, queue_size: int) -> gr.Blocks:
    app = build_app(services)
    # Chat streams have their own limit of one (a single model); other actions run two at once.
    app.queue(default_concurrency_limit=2, max_size=queue_size, api_open=False)
    where = f"http://{options['server_name']}:{options['server_port']}"
    log.info("brandvoice at %s (workspace %s)", where, services.workspace.root)
    # quiet: Gradio's own banner suggests a public share link, which this app never offers.
    app.launch(**options, prevent_thread_lock=True, quiet=True)
    return app


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a service manager's stop) ends serving like Ctrl-C, so the cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
