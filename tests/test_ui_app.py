"""The app as a whole: it builds, and the server it launches is locked down as promised."""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import httpx
import pytest

from chatbot.errors import BrandVoiceError
from chatbot.workspace import Workspace
from ui import Services, build_app, launch
from ui.app import PASSWORD_ENV, launch_options
from ui.uploads import UPLOADS


def _no_engine(*_args: object) -> object:
    raise AssertionError("no chat engine is needed here")


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return Services(workspace=Workspace.open(tmp_path / "ws"), engine_factory=_no_engine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_build_app_has_the_four_tabs(services: Services):
    app = build_app(services)
    tabs = {b.id: b.label for b in app.blocks.values() if isinstance(b, gr.Tab)}
    assert [tabs[k] for k in ("brand", "train", "compare", "export")] == [
        "Brand",
        "Train",
        "Compare",
        "Export",
    ]
    assert app.title == "brandvoice" and app.analytics_enabled is False


def test_launch_options_are_safe_by_default(services: Services, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    opts = launch_options(services)
    assert opts["server_name"] == "127.0.0.1" and opts["auth"] is None
    assert opts["ssr_mode"] is False and opts["run_history"] is False
    assert opts["share"] is False and opts["show_error"] is False
    assert opts["enable_monitoring"] is False and opts["mcp_server"] is False
    assert opts["allowed_paths"] == [str(services.exports_dir.resolve())]
    root = services.workspace.root.resolve()
    assert str(root / "brands") in opts["blocked_paths"]
    assert str(root / "brandvoice.sqlite3") in opts["blocked_paths"]
    assert opts["max_file_size"]


def test_password_from_the_environment(services: Services, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    assert launch_options(services)["auth"] == ("brandvoice", "s3cret")
    assert launch_options(services, username="maya")["auth"] == ("maya", "s3cret")


def test_no_network_listening_without_a_password(services: Services, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(BrandVoiceError, match=PASSWORD_ENV):
        launch_options(services, host="0.0.0.0")
    assert launch_options(services, host="0.0.0.0", password="pw")["auth"][1] == "pw"


def test_server_serves_exports_and_nothing_else(services: Services, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    ws = services.workspace.root
    (ws / "brands" / "b").mkdir(parents=True)
    (ws / "brands" / "b" / "conversations.jsonl").write_text('{"secret": 1}\n')
    services.exports_dir.mkdir(parents=True, exist_ok=True)
    (services.exports_dir / "b-adapter.zip").write_bytes(b"PK")
    port = _free_port()
    app = launch(services, port=port, block=False)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/").status_code == 200
        config = httpx.get(base + "/config").json()
        assert config["run_history"] is False  # no chat messages kept in the browser's storage
        assert httpx.get(base + "/gradio_api/runs").status_code == 404
        assert config["analytics_enabled"] is False and config["show_error"] is False
        for secret in (ws / "brands" / "b" / "conversations.jsonl", ws / "brandvoice.sqlite3"):
            r = httpx.get(f"{base}/gradio_api/file={secret.resolve()}")
            assert r.status_code == 403, secret
        assert httpx.get(f"{base}/gradio_api/file=/etc/passwd").status_code == 403
        zip_url = f"{base}/gradio_api/file={(services.exports_dir / 'b-adapter.zip').resolve()}"
        assert httpx.get(zip_url).content == b"PK"
    finally:
        app.close()


def test_server_asks_for_the_password(services: Services, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    port = _free_port()
    app = launch(services, port=port, block=False)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/config").status_code == 401
        with httpx.Client() as client:
            ok = client.post(base + "/login", data={"username": "brandvoice", "password": "s3cret"})
            assert ok.status_code == 200
            assert client.get(base + "/config").status_code == 200
    finally:
        app.close()


def test_errors_become_readable_messages(caplog):
    from ui.errors import GENERIC_MESSAGE, user_errors

    def bad_input() -> None:
        raise BrandVoiceError("line 3: expected <EMAIL> here")

    def bug() -> None:
        raise KeyError("internal detail")

    def stream() -> Iterator[int]:
        yield 1
        raise BrandVoiceError("stopped")

    with pytest.raises(gr.Error) as err:
        user_errors(bad_input)()
    assert err.value.message == "line 3: expected &lt;EMAIL&gt; here"
    with pytest.raises(gr.Error) as err:
        user_errors(bug)()
    assert err.value.message == GENERIC_MESSAGE and "internal detail" not in err.value.message
    assert "internal detail" in caplog.text  # the details go to the server log
    wrapped = user_errors(stream)
    with pytest.raises(gr.Error, match="stopped"):
        list(wrapped())


# --- requests from other sites, uploads ---------------------------------------------------------

PII_FILE = "\n".join(f'{{"customer": "reach me at person{i}@example.com"}}' for i in range(40))


@pytest.fixture
def running(services: Services, monkeypatch) -> Iterator[str]:
    """The app on a free port, with small upload totals: 3 kB per session, 5 kB in the folder."""
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    port = _free_port()
    app = launch(
        services,
        port=port,
        block=False,
        session_upload_bytes=3000,
        workspace_upload_bytes=5000,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.close()


def _upload(client: httpx.Client, base: str, name: str, data: bytes, **headers: str):
    files = {"files": (name, data, "application/octet-stream")}
    return client.post(f"{base}/gradio_api/upload", files=files, headers=headers)


def _stored(ws: Path) -> list[Path]:
    return [p for p in (ws / UPLOADS).rglob("*") if p.is_file()]


def test_forged_host_is_refused(running: str):
    port = running.rsplit(":", 1)[1]
    forged = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    config = httpx.get(f"{running}/config", headers=forged)
    assert config.status_code == 400 and "root" not in config.text
    join = httpx.post(f"{running}/gradio_api/queue/join", headers=forged, json={})
    assert join.status_code == 400
    assert httpx.get(f"{running}/config", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_cross_site_uploads_are_refused(running: str, services: Services):
    with httpx.Client() as client:
        assert client.get(running + "/").status_code == 200  # the page sets the session cookie
        other_site = _upload(client, running, "a.jsonl", b"x" * 100, Origin="http://evil.example")
        assert other_site.status_code == 403
        assert _stored(services.workspace.root) == []
        own = _upload(client, running, "a.jsonl", PII_FILE.encode(), Origin=running)
        assert own.status_code == 200, own.text
    [stored] = _stored(services.workspace.root)
    uploads = services.workspace.root / UPLOADS
    assert stored.read_bytes() == PII_FILE.encode() and uploads in stored.parents
    for folder in (uploads, stored.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    # A client that never loaded the page has no session and cannot upload.
    assert _upload(httpx.Client(), running, "b.jsonl", b"x").status_code == 403


def test_uploads_have_totals_per_session_and_per_workspace(running: str, services: Services):
    sessions = [httpx.Client() for _ in range(3)]
    try:
        for client in sessions:
            client.get(running + "/")
        first, second, third = sessions
        assert _upload(first, running, "a.txt", b"a" * 1200).status_code == 200
        refused = _upload(first, running, "b.txt", b"b" * 1700)  # 2.9 kB + the form's own bytes
        assert refused.status_code == 413 and "This browser has uploaded" in refused.text
        assert _upload(second, running, "c.txt", b"c" * 1500).status_code == 200
        assert _upload(third, running, "d.txt", b"d" * 1500).status_code == 200
        # Within the third session's 3 kB, but the folder holds 4.2 kB of its 5 kB.
        refused = _upload(third, running, "e.txt", b"e" * 900)
        assert refused.status_code == 413 and "upload folder holds" in refused.text
    finally:
        for client in sessions:
            client.close()
    assert sum(p.stat().st_size for p in _stored(services.workspace.root)) == 4200


def test_stopping_the_app_deletes_its_uploads(tmp_path: Path, monkeypatch):
    """SIGTERM (what a service manager sends) ends `brandvoice ui` with its uploads removed.

    The command runs here, in the main thread (where signals arrive); a helper thread uploads a
    file once the app answers, checks it landed in the workspace, then sends the signal.
    """
    from chatbot.cli import commands as cli
    from ui.services import Services as RealServices

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    monkeypatch.setattr(RealServices, "start_warm_up", lambda self: None)  # no chat model here
    ws, port = tmp_path / "ws", _free_port()
    base, seen = f"http://127.0.0.1:{port}", []

    def upload_then_stop() -> None:
        deadline = time.monotonic() + 120  # a guard against a hung start, not a speed target
        try:
            while time.monotonic() < deadline and not seen:
                try:
                    with httpx.Client() as client:
                        if client.get(base + "/").status_code == 200:
                            assert _upload(
                                client, base, "chats.jsonl", PII_FILE.encode()
                            ).is_success
                            seen.extend(p.read_bytes() for p in _stored(ws))
                except httpx.TransportError:
                    time.sleep(0.2)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=upload_then_stop, daemon=True)
    helper.start()
    assert cli.main(["ui", "--workspace", str(ws), "--port", str(port)]) == 0
    helper.join(timeout=60)
    assert seen == [PII_FILE.encode()]  # the upload was in the workspace's folder while running
    assert _stored(ws) == [] and not list((ws / UPLOADS).iterdir())


def test_a_refused_host_is_said_before_anything_claims_to_run(tmp_path: Path, monkeypatch, capsys):
    from chatbot.cli import commands as cli

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert cli.main(["ui", "--workspace", str(tmp_path / "ws"), "--host", "0.0.0.0"]) == 2
    captured = capsys.readouterr()
    assert "running at" not in captured.out and "without a password" in captured.err
