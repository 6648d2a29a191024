"""The app as a whole: it builds, and the server it launches is locked down as promised."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import httpx
import pytest

from chatbot.errors import BrandVoiceError
from chatbot.workspace import Workspace
from ui import Services, build_app, launch
from ui.app import PASSWORD_ENV, launch_options


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
