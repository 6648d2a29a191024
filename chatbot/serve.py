"""An OpenAI-compatible HTTP API over the chat engine: a brand's tuned model for other programs.

`create_app(engine, model_id)` gives a FastAPI app with

- `GET /v1/models`: the one model, named `model_id` (the brand's slug, as in the vLLM command of
  the serving guide, so a client can switch between the two servers unchanged);
- `POST /v1/chat/completions`: replies from the tuned model (the engine's "tuned" mode), whole or
  streamed as server-sent events (`"stream": true`, chunks of `chat.completion.chunk`, then
  `data: [DONE]`).

The server adds the brand's trained system prompt itself, as the chat engine does. A request's own
system message is accepted only when it is that same prompt (what a client written for vLLM sends)
and refused otherwise, since the model was not trained to follow another. `temperature`, `top_p`,
`max_tokens`/`max_completion_tokens`, `seed` and vLLM's `repetition_penalty` are honoured;
`n` > 1, `stop` and tools are refused rather than ignored. What a request leaves out comes from
`defaults` (the CLI passes the brand's reply-length cap and sign-off, see `chatbot.reply_length`).
Token counts in `usage` come from re-tokenising the prompt and reply text, so they can be off by a
token or two.

`serve` runs it with uvicorn: on 127.0.0.1 unless an API key is set, which every request must then
send as `Authorization: Bearer KEY`. Requests take turns on the one model (the engine's queue); when
too many wait, the API answers 400 with the engine's "busy" message.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from itertools import chain
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from chatbot.engine import GenerationSettings
from chatbot.errors import BrandVoiceError

__all__ = ["ServeBackend", "create_app", "serve", "check_bind", "LOOPBACK", "API_KEY_ENV"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
API_KEY_ENV = "BRANDVOICE_API_KEY"
_MODE = "tuned"


class ServeBackend(Protocol):
    """The part of `chatbot.engine.ChatEngine` the API uses."""

    tuned_system_prompt: str

    @property
    def tokenizer(self) -> Any: ...

    def stream(
        self, messages: list[dict[str, str]], mode: str, settings: GenerationSettings | None = None
    ) -> Iterator[str]: ...

    def render_prompt(
        self, messages: list[dict[str, str]], mode: str, settings: GenerationSettings | None = None
    ) -> str: ...


class APIError(Exception):
    """A request the API refuses, with the HTTP status and OpenAI error type to answer with."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.kind = kind


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat completion request that this server reads (others ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[_Message]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = 1
    stop: str | list[str] | None = None
    tools: list[Any] | None = None


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if host not in LOOPBACK and not api_key:
        raise BrandVoiceError(
            f"Refusing to serve on {host} without an API key: anyone on the network could use "
            f"the model. Set {API_KEY_ENV} (or --api-key), or use 127.0.0.1."
        )


def create_app(
    backend: ServeBackend,
    model_id: str,
    *,
    api_key: str | None = None,
    defaults: GenerationSettings | None = None,
) -> FastAPI:
    """The API over `backend`, answering as model `model_id`; see the module doc."""
    defaults = defaults or GenerationSettings()
    app = FastAPI(title="brandvoice", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())

    def authorised(request: Request) -> None:
        if not api_key:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise APIError("Missing or wrong API key.", 401, "authentication_error")

    @app.exception_handler(APIError)
    def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return _error(str(exc), exc.status, exc.kind)

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(f"{where}: {first.get('msg', 'invalid request')}", 400)

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    def models() -> dict[str, Any]:
        entry = {"id": model_id, "object": "model", "created": created, "owned_by": "brandvoice"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)], response_model=None)
    def chat(request: ChatRequest) -> dict[str, Any] | StreamingResponse:
        if request.model != model_id:
            raise APIError(
                f"The model '{request.model}' does not exist; this server serves '{model_id}'.",
                404,
            )
        messages = _conversation(request, backend.tuned_system_prompt)
        settings = _settings(request, defaults)
        if request.stream:
            return _stream(backend, messages, settings, model_id, request)
        return _complete(backend, messages, settings, model_id)

    return app


def serve(
    backend: ServeBackend,
    model_id: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
    defaults: GenerationSettings | None = None,
) -> None:
    """Serve the API with uvicorn until interrupted."""
    import uvicorn

    check_bind(host, api_key)
    app = create_app(backend, model_id, api_key=api_key, defaults=defaults)
    uvicorn.run(app, host=host, port=port)


# ----------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------


def _error(message: str, status: int, kind: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


def _text(message: _Message, index: int) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    if all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
        return "".join(str(p.get("text", "")) for p in parts)
    raise APIError(f"messages[{index}].content: only text is supported.")


def _conversation(request: ChatRequest, system_prompt: str) -> list[dict[str, str]]:
    """The user/assistant turns for the engine; a system message must be the trained one."""
    if request.n != 1:
        raise APIError("n: only one reply per request is supported.")
    if request.stop:
        raise APIError("stop: stop sequences are not supported.")
    if request.tools:
        raise APIError("tools: tool calls are not supported by this model.")
    turns = []
    for i, message in enumerate(request.messages):
        text = _text(message, i)
        if message.role in ("system", "developer"):
            if text.strip() != system_prompt.strip():
                raise APIError(
                    f"messages[{i}]: this server adds the brand's own system prompt (the one the "
                    "model was trained with); leave the system message out or send exactly that."
                )
            continue
        turns.append({"role": message.role, "content": text})
    return turns


def _settings(request: ChatRequest, defaults: GenerationSettings) -> GenerationSettings:
    chosen = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_new_tokens": request.max_completion_tokens or request.max_tokens,
        "seed": request.seed,
        "repetition_penalty": request.repetition_penalty,
    }
    try:
        return replace(defaults, **{k: v for k, v in chosen.items() if v is not None})
    except BrandVoiceError as exc:  # ConfigError lists every invalid value
        raise APIError(str(exc)) from exc


# ----------------------------------------------------------------------------------------------
# Replies
# ----------------------------------------------------------------------------------------------


def _start(
    backend: ServeBackend, messages: list[dict[str, str]], settings: GenerationSettings
) -> Iterator[str]:
    """The reply stream, already running: errors (busy, invalid) surface before any answer."""
    stream = backend.stream(messages, _MODE, settings)
    try:
        first = next(stream)
    except StopIteration:
        return iter(())
    except BrandVoiceError as exc:
        raise APIError(str(exc)) from exc
    return chain([first], stream)


def _usage(
    backend: ServeBackend, messages: list[dict[str, str]], reply: str, settings: GenerationSettings
) -> tuple[dict[str, int], str]:
    """Token counts (re-tokenised, so approximate) and the finish reason they imply."""
    tokenizer = backend.tokenizer
    prompt = len(tokenizer.encode(backend.render_prompt(messages, _MODE, settings)))
    # The engine never generates more than max_new_tokens; re-tokenising may count a few more.
    counted = len(tokenizer.encode(reply, add_special_tokens=False))
    completion = min(counted, settings.max_new_tokens)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return usage, "length" if completion >= settings.max_new_tokens else "stop"


def _complete(
    backend: ServeBackend,
    messages: list[dict[str, str]],
    settings: GenerationSettings,
    model_id: str,
) -> dict[str, Any]:
    reply = "".join(_start(backend, messages, settings))
    usage, finish = _usage(backend, messages, reply, settings)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }


def _stream(
    backend: ServeBackend,
    messages: list[dict[str, str]],
    settings: GenerationSettings,
    model_id: str,
    request: ChatRequest,
) -> StreamingResponse:
    deltas = _start(backend, messages, settings)
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_id,
    }
    with_usage = bool((request.stream_options or {}).get("include_usage"))

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        body = head | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def events() -> Iterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        reply = ""
        try:
            for delta in deltas:
                reply += delta
                yield chunk({"content": delta})
        except BrandVoiceError as exc:  # headers are sent: the error goes in the stream
            yield f"data: {json.dumps({'error': {'message': str(exc)}})}\n\n"
            return
        usage, finish = _usage(backend, messages, reply, settings)
        yield chunk({}, finish)
        if with_usage:
            yield f"data: {json.dumps(head | {'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
