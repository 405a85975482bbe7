"""A stand-in for a hosted OpenAI-compatible LLM API, for tests only.

It is a real HTTP server on 127.0.0.1 (an ephemeral port) speaking the parts of the OpenAI API the
trainer uses: ``POST /v1/chat/completions`` and ``GET /v1/models``. Replies have OpenAI's JSON
shapes (``chat.completion`` objects with ``usage``; errors as ``{"error": {...}}``), so the real
``openai`` client and ``urllib`` probes talk to it exactly as they would to a hosted endpoint.

Each test scripts it::

    with FakeOpenAI([Reply(503, error_body("overloaded", "server_error")), Reply()]) as fake:
        client = AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
        ...
        assert len(fake.requests) == 2

A script is either a sequence of replies, used in order for successive chat requests (then the
default reply), or a callable ``request_json -> Reply | (status, body) | (status, body, delay)``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

DEFAULT_CONTENT = "The answer is 4."
DEFAULT_MODEL = "fake-model"
MAX_DELAY_S = 30.0  # no scripted delay may hold a handler thread longer than this


def chat_completion(
    content: str | None = DEFAULT_CONTENT,
    *,
    model: str = DEFAULT_MODEL,
    finish_reason: str = "stop",
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    include_usage: bool = True,
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object."""
    body: dict[str, Any] = {
        "id": "chatcmpl-fake0001",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }
    if include_usage:
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return body


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    *,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """An error body as OpenAI sends it with a 4xx/5xx status."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


CONTEXT_OVERFLOW = error_body(
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. "
    "Please reduce the length of the messages.",
    "invalid_request_error",
    code="context_length_exceeded",
    param="messages",
)
SERVER_ERROR = error_body("The server had an error while processing your request.", "server_error")
OVERLOADED = error_body("The engine is currently overloaded, please try again later.", "server_error")
RATE_LIMITED = error_body("Rate limit reached for requests.", "requests", code="rate_limit_exceeded")


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body=None`` means the default chat completion (or error for >= 400).

    ``drop=True`` closes the connection without any response, as a crashed or restarting server
    (or a proxy) does; the client sees a connection error.
    """

    status: int = 200
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


Script = Sequence[Reply] | Callable[[dict[str, Any]], Any]


def _as_reply(value: Any) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        return Reply(*value)
    raise TypeError(f"a script must produce Reply or (status, body[, delay]), got {value!r}")


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


class FakeOpenAI:
    """Threaded OpenAI-compatible HTTP server on 127.0.0.1; a context manager."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        default: Reply | None = None,
        models: Sequence[str] = (DEFAULT_MODEL,),
    ) -> None:
        self._script = script
        self._position = 0
        self._default = default or Reply()
        self._models = list(models)
        self._lock = threading.Lock()
        self._log: list[Recorded] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what tests read ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[Any]:
        """JSON bodies of every chat completion request received, in arrival order."""
        with self._lock:
            return [r.body for r in self._log if r.path.endswith("/chat/completions")]

    @property
    def log(self) -> list[Recorded]:
        """Every request received (any method and path)."""
        with self._lock:
            return list(self._log)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------------
    def _record(self, entry: Recorded) -> None:
        with self._lock:
            self._log.append(entry)

    def _next_reply(self, body: Any) -> Reply:
        script = self._script
        if callable(script):
            return _as_reply(script(body))
        with self._lock:
            if script is not None and self._position < len(script):
                reply = _as_reply(script[self._position])
                self._position += 1
                return reply
        return self._default

    def _models_body(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self._models],
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "fake-openai/1.0"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("x-request-id", "req_fake")
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. its timeout fired first)

            def do_GET(self) -> None:
                fake._record(Recorded("GET", self.path, _lower(self.headers), None))
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, fake._models_body())
                else:
                    self._send(404, error_body(f"Invalid URL (GET {self.path})", code="unknown_url"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                fake._record(Recorded("POST", self.path, _lower(self.headers), body))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, error_body(f"Invalid URL (POST {self.path})", code="unknown_url"))
                    return
                if not isinstance(body, dict) or "messages" not in body:
                    self._send(400, error_body("We could not parse the JSON body of your request.", param="body"))
                    return
                reply = fake._next_reply(body)
                if reply.delay > 0 and fake._stopping.wait(min(reply.delay, MAX_DELAY_S)):
                    return  # shutting down
                if reply.drop:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = reply.body
                if payload is None:
                    payload = (
                        chat_completion(model=str(body.get("model") or DEFAULT_MODEL))
                        if reply.status < 400
                        else error_body(f"HTTP {reply.status}", "server_error" if reply.status >= 500 else "error")
                    )
                self._send(reply.status, payload, reply.headers)

        return Handler


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
