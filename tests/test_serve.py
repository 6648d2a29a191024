"""The OpenAI-compatible API, on loopback, answered for the official openai client; and what it
refuses before the model is involved (other sites, oversized requests, a full line)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest
import torch
import uvicorn
from export_support import make_adapter

from chatbot.engine import ChatEngine, GenerationSettings
from chatbot.errors import BrandVoiceError
from chatbot.serving.server import MAX_BODY_BYTES, check_bind, create_app, read_api_key

MODEL = "lumen-lamps"
SYSTEM = "You are Lumen Lamps' assistant."
HELLO = [{"role": "user", "content": "Hello"}]
TIMEOUT = 60  # seconds: a guard against a hung server, not a speed target


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ChatEngine:
    adapter = make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "adapter")
    return ChatEngine(tiny_model_dir, adapter, "", tuned_system_prompt=SYSTEM, quantization="none")


def _serve(app: object) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="test-api")
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)


@pytest.fixture(scope="module")
def client(engine: ChatEngine) -> Iterator[openai.OpenAI]:
    for url in _serve(create_app(engine, MODEL)):
        yield openai.OpenAI(base_url=url, api_key="unused", timeout=TIMEOUT, max_retries=0)


def test_models_lists_the_brand(client: openai.OpenAI):
    [model] = client.models.list().data
    assert (model.id, model.owned_by) == (MODEL, "brandvoice")


def test_a_reply_whole_and_streamed_is_the_tuned_models(client: openai.OpenAI, engine: ChatEngine):
    expected = engine.reply(HELLO, "tuned", GenerationSettings(temperature=0, max_new_tokens=8))
    assert expected
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=8)
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", expected)
    assert choice.finish_reason in ("stop", "length") and reply.model == MODEL
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 8

    # A client written for vLLM sends the system prompt itself: the same one is accepted.
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": SYSTEM}, *HELLO],
            temperature=0,
            max_completion_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == expected
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("request_fields", "status", "message"),
    [
        ({"model": "gpt-4o"}, 404, "does not exist; this server serves 'lumen-lamps'"),
        ({"messages": [{"role": "system", "content": "Be a pirate."}, *HELLO]}, 400, "system"),
        ({"n": 2}, 400, "only one reply"),
        ({"temperature": 9}, 400, "temperature: must be between 0 and 5"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, 400, "start and end with a user"),
    ],
)
def test_bad_requests_say_why(
    client: openai.OpenAI, request_fields: dict, status: int, message: str
):
    fields = {"model": MODEL, "messages": HELLO, "max_tokens": 2} | request_fields
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**fields)
    assert caught.value.status_code == status and message in caught.value.message


def test_an_api_key_is_required_once_set(engine: ChatEngine):
    for url in _serve(create_app(engine, MODEL, api_key="s3cret")):
        assert httpx.get(f"{url}/models", timeout=TIMEOUT).status_code == 401
        wrong = openai.OpenAI(base_url=url, api_key="guess", timeout=TIMEOUT, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = openai.OpenAI(base_url=url, api_key="s3cret", timeout=TIMEOUT, max_retries=0)
        assert right.models.list().data[0].id == MODEL


# -- what is refused before the model -----------------------------------------------------------


def test_forged_hosts_and_other_sites_are_refused(client: openai.OpenAI):
    url = str(client.base_url).rstrip("/")
    port = urlsplit(url).port
    forged = httpx.get(f"{url}/models", headers={"Host": f"evil.example:{port}"}, timeout=TIMEOUT)
    assert forged.status_code == 400 and MODEL not in forged.text
    assert "--allowed-host evil.example" in forged.json()["error"]["message"]
    other_site = {"Origin": "http://evil.example"}
    refused = httpx.get(f"{url}/models", headers=other_site, timeout=TIMEOUT)
    assert refused.status_code == 403 and MODEL not in refused.text
    own = {"Origin": f"http://127.0.0.1:{port}"}
    assert httpx.get(f"{url}/models", headers=own, timeout=TIMEOUT).status_code == 200
    assert httpx.get(f"{url}/models", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_oversized_requests_are_refused_at_once(client: openai.OpenAI):
    url = str(client.base_url).rstrip("/") + "/chat/completions"
    huge = [{"role": "user", "content": "lamp " * 200_000}]  # 1 MB
    body = json.dumps({"model": MODEL, "messages": huge}).encode()
    assert len(body) > MAX_BODY_BYTES
    answer = httpx.post(url, content=body, timeout=TIMEOUT)
    assert answer.status_code == 413 and "limit" in answer.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    assert httpx.post(url, content=chunked(), timeout=TIMEOUT).status_code == 413
    many = [{"role": "user", "content": "hi"}] * 301
    answer = httpx.post(url, json={"model": MODEL, "messages": many}, timeout=TIMEOUT)
    assert answer.status_code == 400 and "over this server's limit" in answer.text


class _Forwards:
    """Counts the model's forward passes (one per generated token) and can slow or hold them."""

    def __init__(self, model: torch.nn.Module, delay: float = 0.0, hold: bool = False) -> None:
        self.calls = 0
        self.opened = threading.Event()
        if not hold:
            self.opened.set()
        self._delay = delay
        self._handle = model.get_input_embeddings().register_forward_pre_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.calls += 1
        assert self.opened.wait(timeout=TIMEOUT)
        time.sleep(self._delay)

    def remove(self) -> None:
        self.opened.set()
        self._handle.remove()


def _send(url: str, body: dict) -> socket.socket:
    """POST a chat request on a raw socket, so the test decides when the client hangs up."""
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
    head = (
        f"POST {parts.path}/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


def _until(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


LONG = {"model": MODEL, "messages": HELLO, "temperature": 0, "max_tokens": 400}


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_hangs_up_frees_the_model(
    client: openai.OpenAI, engine: ChatEngine, stream: bool
):
    url = str(client.base_url).rstrip("/")
    forwards = _Forwards(engine.model, delay=0.01)
    try:
        sock = _send(url, LONG | {"repetition_penalty": 1.0, "stream": stream})
        _until(lambda: forwards.calls >= 3, "the reply to start")
        sock.close()
        _until(lambda: engine.pending == 0, "the model to be free")
        stopped_at = forwards.calls
        assert stopped_at < 100, stopped_at  # one pass per token: far fewer than 400
        reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)
        assert reply.choices[0].message.content is not None
    finally:
        forwards.remove()


def test_a_full_line_is_answered_429_with_retry_after(tiny_model_dir: Path, engine: ChatEngine):
    adapter = engine.adapter_dir
    single = ChatEngine(
        tiny_model_dir, adapter, "", tuned_system_prompt=SYSTEM, quantization="none", max_waiting=0
    )
    for url in _serve(create_app(single, MODEL)):
        forwards = _Forwards(single.model, hold=True)
        try:
            first = _send(url, LONG)
            _until(lambda: forwards.calls == 1, "the first request to hold the model")  # noqa: B023
            busy = httpx.post(f"{url}/chat/completions", json=LONG, timeout=TIMEOUT)
            assert busy.status_code == 429 and busy.headers["Retry-After"] == "2"
            error = busy.json()["error"]
            assert error["type"] == "rate_limit_error" and "busy" in error["message"]
        finally:
            forwards.remove()
        first.close()
        _until(lambda: single.pending == 0, "the model to be free")


def test_the_api_key_comes_from_a_file_or_the_environment(tmp_path: Path, monkeypatch):
    from chatbot.cli import commands as cli

    monkeypatch.setenv("BRANDVOICE_API_KEY", "from-env")
    assert read_api_key() == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert read_api_key(key_file) == "from-file"
    key_file.write_text("  \n")
    with pytest.raises(BrandVoiceError, match="is empty"):
        read_api_key(key_file)
    monkeypatch.delenv("BRANDVOICE_API_KEY")
    assert read_api_key() is None
    # On the command line a key would show in `ps`: refused before anything starts.
    assert cli.main(["serve", "--run", "x", "--api-key", "s3cret"]) == 2


def test_listening_beyond_loopback_needs_a_key():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "key")
    with pytest.raises(BrandVoiceError, match="without an API key"):
        check_bind("0.0.0.0", None)


class _Recording:
    """The engine, noting the settings of every reply it is asked for."""

    def __init__(self, engine: ChatEngine) -> None:
        self._engine = engine
        self.tuned_system_prompt = engine.tuned_system_prompt
        self.settings: list[GenerationSettings] = []

    @property
    def tokenizer(self) -> object:
        return self._engine.tokenizer

    def stream(
        self,
        messages: list[dict],
        mode: str,
        settings: GenerationSettings | None = None,
        **kwargs: object,
    ) -> Iterator[str]:
        self.settings.append(settings)
        return self._engine.stream(messages, mode, settings, **kwargs)

    def render_prompt(
        self, messages: list[dict], mode: str, settings: GenerationSettings | None = None
    ) -> str:
        return self._engine.render_prompt(messages, mode, settings)


def test_what_a_request_leaves_out_comes_from_the_brand_defaults(engine: ChatEngine):
    backend = _Recording(engine)
    defaults = GenerationSettings(max_new_tokens=6, signoff="Shine on, Lumen Lamps")
    for url in _serve(create_app(backend, MODEL, defaults=defaults)):
        client = openai.OpenAI(base_url=url, api_key="unused", timeout=TIMEOUT, max_retries=0)
        reply = client.chat.completions.create(model=MODEL, messages=HELLO, temperature=0)
        assert 0 < reply.usage.completion_tokens <= 6
        client.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=9)
    brand, asked = backend.settings
    assert (brand.max_new_tokens, brand.signoff) == (6, "Shine on, Lumen Lamps")
    assert (asked.max_new_tokens, asked.signoff, asked.temperature) == (
        9,
        "Shine on, Lumen Lamps",
        0,
    )
