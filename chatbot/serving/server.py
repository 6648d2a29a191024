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
`defaults` (the CLI passes the brand's reply-length cap and sign-off, see
`chatbot.engine.reply_length`). Token counts in `usage` come from re-tokenising the prompt and reply
text, so they can be off by a token or two.

`serve` runs it with uvicorn: on 127.0.0.1 unless an API key is set, which every request must then
send as `Authorization: Bearer KEY`. The key comes from $BRANDVOICE_API_KEY or a file, never from
the command line, where every user of the machine could read it (`ps`). Requests take turns on the
one model (the engine's queue); when too many wait, the API answers 429 with `Retry-After`, which
OpenAI clients retry on.

Before a request reaches the model: its Host must be a name this server answers to and a browser's
Origin its own (`chatbot.serving.http_guard`), the body at most `MAX_BODY_BYTES` (413 otherwise, at
once) and the conversation at most `MAX_MESSAGES` messages. A client that hangs up stops its reply:
a request still waiting leaves the line, a running one stops after the current token, so the model
is free for the next request.
"""

from __future__ import annotations

import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from chatbot.engine import GenerationSettings, StopFlag
from chatbot.errors import BrandVoiceError, BusyError
from chatbot.serving.http_guard import LOOPBACK, RequestGuard, allowed_hosts, is_loopback

__all__ = [
    "ServeBackend",
    "create_app",
    "serve",
    "check_bind",
    "read_api_key",
    "LOOPBACK",
    "API_KEY_ENV",
    "MAX_BODY_BYTES",
    "MAX_MESSAGES",
]

API_KEY_ENV = "BRANDVOICE_API_KEY"
MAX_BODY_BYTES = 512 * 1024
"""Largest request body: 16 times what fits in an 8k-token window; older turns are dropped."""
MAX_MESSAGES = 256
"""Most messages in one request."""
RETRY_AFTER_S = 2
"""What a busy answer asks a client to wait before trying again."""
_MODE = "tuned"
_DISCONNECT_POLL_S = 0.1
_T = TypeVar("_T")


class ServeBackend(Protocol):
    """The part of `chatbot.engine.ChatEngine` the API uses."""

    tuned_system_prompt: str

    @property
    def tokenizer(self) -> Any: ...

    def stream(
        self,
        messages: list[dict[str, str]],
        mode: str,
        settings: GenerationSettings | None = None,
        *,
        stop: StopFlag | None = None,
    ) -> Iterator[str]: ...

    def render_prompt(
        self, messages: list[dict[str, str]], mode: str, settings: GenerationSettings | None = None
    ) -> str: ...


class APIError(Exception):
    """A request the API refuses, with the HTTP status and OpenAI error type to answer with."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.headers = headers


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
    if not is_loopback(host) and not api_key:
        raise BrandVoiceError(
            f"Refusing to serve on {host} without an API key: anyone on the network could use "
            f"the model. Set {API_KEY_ENV} (or pass --api-key-file), or use 127.0.0.1."
        )


def read_api_key(key_file: Path | None = None) -> str | None:
    """The API key: the first line of `key_file` when given, else $BRANDVOICE_API_KEY, else None."""
    if key_file is None:
        return os.environ.get(API_KEY_ENV) or None
    try:
        text = Path(key_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BrandVoiceError(f"Cannot read the API key file {key_file}: {exc}") from exc
    key = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not key:
        raise BrandVoiceError(
            f"The API key file {key_file} is empty; write the key on its first line."
        )
    return key


def create_app(
    backend: ServeBackend,
    model_id: str,
    *,
    api_key: str | None = None,
    defaults: GenerationSettings | None = None,
    host: str = "127.0.0.1",
    allowed: Sequence[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    max_messages: int = MAX_MESSAGES,
) -> FastAPI:
    """The API over `backend`, answering as model `model_id`; see the module doc.

    `host` is the address it listens on and `allowed` further host names it answers to (see
    `chatbot.serving.http_guard.allowed_hosts`).
    """
    defaults = defaults or GenerationSettings()
    app = FastAPI(title="brandvoice", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        RequestGuard,  # type: ignore[arg-type]
        hosts=allowed_hosts(host, allowed),
        origins=allowed,
        max_body_bytes=max_body_bytes,
        json_errors=True,
    )
    _answer_errors_as_openai(app)
    created = int(time.time())
    authorised = _authorisation(api_key)

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    def models() -> dict[str, Any]:
        entry = {"id": model_id, "object": "model", "created": created, "owned_by": "brandvoice"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)], response_model=None)
    async def chat(body: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        if body.model != model_id:
            raise APIError(
                f"The model '{body.model}' does not exist; this server serves '{model_id}'.",
                404,
            )
        messages = _conversation(body, backend.tuned_system_prompt, max_messages)
        call = _Call(backend, messages, _settings(body, defaults), request)
        if body.stream:
            return await _stream(call, model_id, body)
        return await _complete(call, model_id)

    return app


def serve(
    backend: ServeBackend,
    model_id: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
    defaults: GenerationSettings | None = None,
    allowed: Sequence[str] = (),
) -> None:
    """Serve the API with uvicorn until interrupted."""
    import uvicorn

    check_bind(host, api_key)
    app = create_app(
        backend, model_id, api_key=api_key, defaults=defaults, host=host, allowed=allowed
    )
    uvicorn.run(app, host=host, port=port)


# ----------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------


def _authorisation(api_key: str | None) -> Callable[[Request], None]:
    def authorised(request: Request) -> None:
        if not api_key:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise APIError("Missing or wrong API key.", 401, "authentication_error")

    return authorised


def _answer_errors_as_openai(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return _error(str(exc), exc.status, exc.kind, exc.headers)

    @app.exception_handler(HTTPException)
    def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(str(exc.detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(f"{where}: {first.get('msg', 'invalid request')}", 400)


def _error(
    message: str,
    status: int,
    kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def _text(message: _Message, index: int) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    if all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
        return "".join(str(p.get("text", "")) for p in parts)
    raise APIError(f"messages[{index}].content: only text is supported.")


def _conversation(
    request: ChatRequest, system_prompt: str, max_messages: int
) -> list[dict[str, str]]:
    """The user/assistant turns for the engine; a system message must be the trained one."""
    if len(request.messages) > max_messages:
        raise APIError(
            f"messages: {len(request.messages)} messages, over this server's limit of "
            f"{max_messages}; send the recent part of the conversation."
        )
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


class _Call:
    """One request's reply: what to generate, the stop that ends it early, the client to watch."""

    def __init__(
        self,
        backend: ServeBackend,
        messages: list[dict[str, str]],
        settings: GenerationSettings,
        request: Request,
    ) -> None:
        self.backend, self.messages, self.settings = backend, messages, settings
        self.request = request
        self.stop = StopFlag()

    async def run(self, work: Callable[[], _T]) -> _T:
        """`work` in a worker thread; if the client hangs up meanwhile, the reply is stopped."""

        async def watch() -> None:
            while not await self.request.is_disconnected():
                await anyio.sleep(_DISCONNECT_POLL_S)
            self.stop.set()

        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            try:
                result = await anyio.to_thread.run_sync(work)
            except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                failure = exc  # (raised inside, it would come out wrapped in an ExceptionGroup)
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return result

    def start(self) -> Iterator[str]:
        """The reply stream, already running: errors (busy, invalid) surface before any answer."""
        stream = self.backend.stream(self.messages, _MODE, self.settings, stop=self.stop)
        try:
            first = next(stream)
        except StopIteration:
            return iter(())
        except BusyError as exc:
            raise APIError(
                str(exc), 429, "rate_limit_error", {"Retry-After": str(RETRY_AFTER_S)}
            ) from exc
        except BrandVoiceError as exc:
            raise APIError(str(exc)) from exc
        return chain([first], stream)

    def usage(self, reply: str) -> tuple[dict[str, int], str]:
        """Token counts (re-tokenised, so approximate) and the finish reason they imply."""
        backend, settings = self.backend, self.settings
        tokenizer = backend.tokenizer
        prompt = len(tokenizer.encode(backend.render_prompt(self.messages, _MODE, settings)))
        # The engine never generates more than max_new_tokens; re-tokenising may count a few more.
        counted = len(tokenizer.encode(reply, add_special_tokens=False))
        completion = min(counted, settings.max_new_tokens)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return usage, "length" if completion >= settings.max_new_tokens else "stop"


async def _complete(call: _Call, model_id: str) -> dict[str, Any]:
    reply = await call.run(lambda: "".join(call.start()))
    usage, finish = await anyio.to_thread.run_sync(call.usage, reply)
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


class _StoppingStream(StreamingResponse):
    """A streamed reply that stops generating however the response ends (a hang-up included)."""

    def __init__(self, content: AsyncIterator[str], stop: StopFlag) -> None:
        super().__init__(content, media_type="text/event-stream")
        self._stop = stop

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stop.set()


async def _stream(call: _Call, model_id: str, request: ChatRequest) -> StreamingResponse:
    deltas = await call.run(call.start)
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

    async def events() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        reply = ""
        try:
            while (delta := await call.run(lambda: next(deltas, None))) is not None:
                reply += delta
                yield chunk({"content": delta})
        except BrandVoiceError as exc:  # headers are sent: the error goes in the stream
            yield f"data: {json.dumps({'error': {'message': str(exc)}})}\n\n"
            return
        usage, finish = await anyio.to_thread.run_sync(call.usage, reply)
        yield chunk({}, finish)
        if with_usage:
            yield f"data: {json.dumps(head | {'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return _StoppingStream(events(), call.stop)
