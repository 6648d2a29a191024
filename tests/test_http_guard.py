"""Which Host and Origin headers the local servers accept (rules shared by the app and serve)."""

from __future__ import annotations

import socket

import pytest

from chatbot.serving.http_guard import ALLOWED_HOSTS_ENV, RequestGuard, allowed_hosts, host_name


def _guard(bind: str = "127.0.0.1", configured: tuple[str, ...] = ()) -> RequestGuard:
    return RequestGuard(lambda *_: None, allowed_hosts(bind, configured), configured)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("127.0.0.1:7860", "127.0.0.1"),
        ("LOCALHOST", "localhost"),
        ("[::1]:8000", "::1"),
        ("::1", "::1"),
        ("brand.example.com:443", "brand.example.com"),
        ("[::1", None),
        ("", None),
    ],
)
def test_host_names(value: str, name: str | None):
    assert host_name(value) == name


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:1", "[::1]:7860", "localhost"])
def test_loopback_names_with_any_port_pass(host: str):
    assert _guard().refusal({"host": host}) is None


@pytest.mark.parametrize("host", ["evil.example:7860", "evil.example", "10.0.0.5:7860", "", "[::1"])
def test_other_hosts_are_refused(host: str):
    status, message = _guard().refusal({"host": host})
    assert status == 400 and "DNS rebinding" in message


def test_configured_and_listening_names_pass(monkeypatch):
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "lan-box, proxy.example.com")
    guard = _guard("10.0.0.5", ("brand.example.com",))
    for host in ("10.0.0.5:7860", "lan-box:7860", "proxy.example.com", "brand.example.com:80"):
        assert guard.refusal({"host": host}) is None, host
    assert guard.refusal({"host": "10.0.0.6:7860"})[0] == 400


def test_a_wildcard_bind_answers_to_this_machine():
    names = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in names and "127.0.0.1" in names
    assert "evil.example" not in names


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("http://127.0.0.1:7860", True),
        ("http://127.0.0.1:7861", False),  # another local site is another origin
        ("http://localhost:7860", False),
        ("http://evil.example", False),
        ("null", False),
        ("file://", False),
        ("https://127.0.0.1:7860", True),  # a TLS proxy in front
    ],
)
def test_origin_must_be_the_servers_own(origin: str, ok: bool):
    refusal = _guard().refusal({"host": "127.0.0.1:7860", "origin": origin})
    assert (refusal is None) == ok
    if not ok:
        assert refusal[0] == 403


def test_a_configured_public_name_may_send_requests_through_a_proxy():
    guard = _guard(configured=("brand.example.com",))
    headers = {"host": "127.0.0.1:7860", "origin": "https://brand.example.com"}
    assert guard.refusal(headers) is None
