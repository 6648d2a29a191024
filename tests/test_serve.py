"""The OpenAI-compatible API, on loopback, answered for the official openai client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from export_support import make_adapter

from chatbot.engine import ChatEngine, GenerationSettings
from chatbot.errors import BrandVoiceError
from chatbot.serve import check_bind, create_app

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
        self, messages: list[dict], mode: str, settings: GenerationSettings | None = None
    ) -> Iterator[str]:
        self.settings.append(settings)
        return self._engine.stream(messages, mode, settings)

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
