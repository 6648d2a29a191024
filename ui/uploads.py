"""Uploads: where the browser's files land, how long they stay, and how much may arrive.

Uploaded conversations hold personal data not yet redacted, so they never go to the shared system
temp folder. Each running app gets a private folder inside the workspace,
`<workspace>/uploads/app-<pid>/` (0700, and Gradio's file cache: `GRADIO_TEMP_DIR`); it starts
empty, leftovers of apps no longer running are removed at start, the app removes its own folder
when it stops, and `discard` deletes each uploaded file once prepare has read it.

`UploadQuota` is ASGI middleware over the app. It gives each browser a session cookie, and an
upload (any multipart request) needs that cookie, a Content-Length, and room in two totals: what
this browser session has uploaded, and what the workspace's upload folder holds now. The cookie is
`SameSite=Strict`, so a page of another site never sends it. Nothing here imports gradio.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from chatbot.service import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "UPLOADS",
    "SESSION_COOKIE",
    "UploadQuota",
    "app_upload_dir",
    "remove_upload_dir",
    "discard",
]

UPLOADS = "uploads"
"""The workspace's upload folder."""
SESSION_COOKIE = "brandvoice_session"
_APP_PREFIX = "app-"


def app_upload_dir(workspace_root: Path) -> Path:
    """A new, empty, private upload folder for this app; removes those of apps that have ended."""
    root = Path(workspace_root) / UPLOADS
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for entry in root.iterdir():
        pid = entry.name.removeprefix(_APP_PREFIX)
        if entry.name.startswith(_APP_PREFIX) and pid.isdigit() and _running(int(pid)):
            continue
        _remove(entry)
    mine = root / f"{_APP_PREFIX}{os.getpid()}"
    _remove(mine)
    mine.mkdir(mode=0o700)
    return mine


def remove_upload_dir(folder: Path) -> None:
    """Delete an app's upload folder and everything in it (the app is stopping)."""
    _remove(Path(folder))


def discard(paths: Iterable[str | Path | None], workspace_root: Path) -> None:
    """Delete uploaded files once they have been read, with the folder Gradio made for each.

    Only files inside the workspace's upload folder are touched; any other path is left alone.
    """
    root = (Path(workspace_root) / UPLOADS).resolve()
    for value in paths:
        if not value:
            continue
        path = Path(value).resolve()
        if root not in path.parents:
            continue
        path.unlink(missing_ok=True)
        # Gradio puts each upload in a folder of its own, named by a hash, inside the app's folder.
        folder = path.parent
        if folder.parent.parent == root:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _folder_bytes(folder: Path) -> int:
    total = 0
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size
    return total


class UploadQuota:
    """Session cookies, and upload totals per browser session and per workspace (module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        folder: Path,
        *,
        per_session: int,
        per_workspace: int,
    ) -> None:
        self.app = app
        self.folder = Path(folder)
        """The workspace's upload folder, whose contents count against `per_workspace`."""
        self.per_session = per_session
        self.per_workspace = per_workspace
        self._secret = secrets.token_bytes(32)
        self._used: dict[str, int] = {}
        self._arriving = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        session = self._session(headers.get("cookie", ""))
        if not headers.get("content-type", "").startswith("multipart/form-data"):
            await self.app(scope, receive, send if session else self._with_cookie(send))
            return
        size = headers.get("content-length", "")
        refusal = self._refusal(session, size)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        assert session is not None  # _refusal refuses uploads without one
        self._arriving += int(size)
        try:
            await self.app(scope, receive, send)
        finally:
            self._arriving -= int(size)
            self._used[session] = self._used.get(session, 0) + int(size)

    def _refusal(self, session: str | None, size: str) -> tuple[int, str] | None:
        if session is None:
            return 403, "Uploads need the app open in this browser: reload the page and try again."
        if not size.isdigit():
            return 411, "An upload must say its size (Content-Length)."
        used = self._used.get(session, 0)
        if used + int(size) > self.per_session:
            limit = _mb(self.per_session)
            return 413, (
                f"This browser has uploaded {_mb(used)} to the app, and {limit} is its limit until "
                "the app is restarted."
            )
        held = _folder_bytes(self.folder) + self._arriving
        if held + int(size) > self.per_workspace:
            limit = _mb(self.per_workspace)
            return 413, (
                f"The workspace's upload folder holds {_mb(held)} (limit {limit}). Uploaded files "
                "are deleted once prepared; the rest go when the app stops."
            )
        return None

    def _session(self, cookie_header: str) -> str | None:
        """The session named by a valid cookie, or None."""
        cookie = SimpleCookie()
        with contextlib.suppress(CookieError):  # a malformed Cookie header is no session
            cookie.load(cookie_header)
        morsel = cookie.get(SESSION_COOKIE)
        if morsel is None:
            return None
        token, _, signature = morsel.value.partition(".")
        return token if token and hmac.compare_digest(signature, self._sign(token)) else None

    def _sign(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()[:32]

    def _with_cookie(self, send: Send) -> Send:
        token = secrets.token_urlsafe(16)
        value = f"{SESSION_COOKIE}={token}.{self._sign(token)}; Path=/; HttpOnly; SameSite=Strict"

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"set-cookie", value.encode())]
            await send(message)

        return sending


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


async def _answer(send: Send, status: int, message: str) -> None:
    body = message.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
