"""A scripted OpenAI-compatible LLM server: a real HTTP server on loopback, no model behind it.

It speaks the parts of the OpenAI API the trainer uses, ``POST /v1/chat/completions`` and
``GET /v1/models``, plus llama.cpp's ``GET /health``. Replies have OpenAI's JSON shapes
(``chat.completion`` objects with ``usage``; errors as ``{"error": {...}}`` with the matching HTTP
status), so the real ``openai`` client, Agno and ``urllib`` probes talk to it exactly as they would
to a hosted endpoint::

    with ScriptedLLM([Reply(503, error_body("overloaded", "server_error")), Reply()]) as llm:
        client = AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0)
        ...
        assert len(llm.requests) == 2

A script is either a sequence of replies, used in order for successive chat requests (then the
default reply), or a callable ``request_json -> Reply | str | (status, body[, delay])``; a ``str``
is the assistant's text. The callable is called from the server's handler threads, concurrently.

When the server writes the completion itself (a ``Reply`` without ``body``) it behaves like a
model: ``usage`` is counted from the request and the reply (:func:`count_tokens`), a reply longer
than the request's ``max_tokens`` is cut there with ``finish_reason: "length"``, and every reply
waits the server's ``latency`` on top of its own ``delay``. A ``Reply`` with a ``body`` is sent
verbatim: that is how a test scripts exact usage, a malformed answer or an error body.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

DEFAULT_CONTENT: Final = "The answer is 4."
DEFAULT_MODEL: Final = "fake-model"
MAX_DELAY_S: Final = 30.0  # no scripted delay or latency may hold a handler thread longer than this
# OpenAI bills a few tokens of framing per chat message (role, separators) on top of its text.
MESSAGE_OVERHEAD_TOKENS: Final = 3

# Words and single punctuation marks: close enough to a BPE tokenizer's count for usage to grow
# with the text the way a real model's does, and with no tokenizer to install.
_TOKEN_RE: Final = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Tokens of ``text`` as this server counts them: words and punctuation marks."""
    return sum(1 for _ in _TOKEN_RE.finditer(text))


def message_text(message: Any) -> str:
    """The text of one chat message: a string content, or the text parts of a list content."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _prompt_tokens(request: dict[str, Any]) -> int:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return 1
    return max(1, sum(MESSAGE_OVERHEAD_TOKENS + count_tokens(message_text(m)) for m in messages))


def _cut(text: str, limit: int) -> str:
    """``text`` up to the end of its ``limit``-th token."""
    for index, match in enumerate(_TOKEN_RE.finditer(text), start=1):
        if index == limit:
            return text[: match.end()]
    return text


def _reply_limit(request: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = request.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def chat_completion(
    content: str | None = DEFAULT_CONTENT,
    *,
    model: str = DEFAULT_MODEL,
    finish_reason: str = "stop",
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    include_usage: bool = True,
    completion_id: str = "chatcmpl-fake0001",
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object, with exactly the usage given."""
    body: dict[str, Any] = {
        "id": completion_id,
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


CONTEXT_OVERFLOW: Final = error_body(
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. "
    "Please reduce the length of the messages.",
    "invalid_request_error",
    code="context_length_exceeded",
    param="messages",
)
SERVER_ERROR: Final = error_body("The server had an error while processing your request.", "server_error")
OVERLOADED: Final = error_body("The engine is currently overloaded, please try again later.", "server_error")
RATE_LIMITED: Final = error_body("Rate limit reached for requests.", "requests", code="rate_limit_exceeded")


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``body=None`` means the server writes the answer: a chat completion of ``content`` (default
    :data:`DEFAULT_CONTENT`) with counted usage for a status below 400, else an OpenAI error body.
    ``drop=True`` closes the connection without any response, as a crashed or restarting server
    (or a proxy) does; the client sees a connection error.
    """

    status: int = 200
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    content: str | None = None


# What a script may give for one request: a Reply, the assistant's text, or (status, body[, delay]).
ScriptItem = Reply | str | tuple[int, Any] | tuple[int, Any, float]
Script = Sequence[ScriptItem] | Callable[[dict[str, Any]], ScriptItem]


def _as_reply(value: object) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(content=value)
    if isinstance(value, tuple) and len(value) in (2, 3):
        return Reply(*value)
    raise TypeError(f"a script must produce Reply, str or (status, body[, delay]), got {value!r}")


@dataclass(frozen=True)
class Recorded:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _default_error(status: int) -> dict[str, Any]:
    return error_body(f"HTTP {status}", "server_error" if status >= 500 else "error")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets connections when a test fires dozens at once.
    request_queue_size = 128


class ScriptedLLM:
    """Threaded OpenAI-compatible HTTP server answering from a script; a context manager.

    ``port=0`` binds a free port. ``latency`` seconds are added to every chat reply (a scripted
    delay comes on top; the sum is capped at :data:`MAX_DELAY_S`). ``stop()`` wakes handlers that
    are still waiting, so a test never waits for a long scripted delay to run out.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        default: Reply | None = None,
        models: Sequence[str] = (DEFAULT_MODEL,),
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency}")
        self._script = script
        self._position = 0
        self._default = default or Reply()
        self._models = list(models)
        self._host = host
        self._port = port
        self.latency = min(latency, MAX_DELAY_S)
        self._lock = threading.Lock()
        self._log: list[Recorded] = []
        self._ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- what tests read ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://host:port``, where ``/health`` is."""
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``…/v1``) to give a client."""
        return f"{self.root_url}/v1"

    @property
    def requests(self) -> list[Any]:
        """JSON bodies of every chat completion request received, in arrival order."""
        with self._lock:
            return [r.body for r in self._log if r.path.rstrip("/").endswith("/chat/completions")]

    @property
    def log(self) -> list[Recorded]:
        """Every request received (any method and path)."""
        with self._lock:
            return list(self._log)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ScriptedLLM:
        if self._server is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        server = _Server((self._host, self._port), self._handler_class())
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- answering ---------------------------------------------------------------------------
    def _record(self, entry: Recorded) -> None:
        with self._lock:
            self._log.append(entry)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        script = self._script
        if callable(script):
            return _as_reply(script(body))
        with self._lock:
            if script is not None and self._position < len(script):
                reply = _as_reply(script[self._position])
                self._position += 1
                return reply
        return self._default

    def completion(self, request: dict[str, Any], content: str) -> dict[str, Any]:
        """The completion a model would send for ``content``: cut at ``max_tokens``, usage counted."""
        finish_reason = "stop"
        limit = _reply_limit(request)
        if limit is not None and count_tokens(content) > limit:
            content, finish_reason = _cut(content, limit), "length"
        return chat_completion(
            content,
            model=str(request.get("model") or DEFAULT_MODEL),
            finish_reason=finish_reason,
            prompt_tokens=_prompt_tokens(request),
            completion_tokens=max(1, count_tokens(content)),
            completion_id=f"chatcmpl-scripted{next(self._ids):06d}",
        )

    def _payload(self, request: dict[str, Any], reply: Reply) -> Any:
        if reply.body is not None:
            return reply.body
        if reply.status >= 400:
            return _default_error(reply.status)
        return self.completion(request, DEFAULT_CONTENT if reply.content is None else reply.content)

    def _wait(self, reply: Reply) -> bool:
        """Sleep the reply's delay plus the latency; False when the server stops meanwhile."""
        seconds = min(max(reply.delay, 0.0) + self.latency, MAX_DELAY_S)
        return seconds <= 0 or not self._stopping.wait(seconds)

    def _models_body(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "scripted"} for m in self._models],
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "scripted-llm/1.0"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("x-request-id", f"req_scripted{next(llm._request_ids):06d}")
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. its timeout fired first)

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def do_GET(self) -> None:
                llm._record(Recorded("GET", self.path, _lower(self.headers), None))
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == "/v1/models":
                    self._send(200, llm._models_body())
                elif path in ("/health", "/v1/health"):
                    self._send(200, {"status": "ok"})
                else:
                    self._send(404, error_body(f"Invalid URL (GET {self.path})", code="unknown_url"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                llm._record(Recorded("POST", self.path, _lower(self.headers), body))
                if self.path.split("?", 1)[0].rstrip("/") != "/v1/chat/completions":
                    self._send(404, error_body(f"Invalid URL (POST {self.path})", code="unknown_url"))
                    return
                if not isinstance(body, dict) or "messages" not in body:
                    self._send(400, error_body("We could not parse the JSON body of your request.", param="body"))
                    return
                reply = llm._next_reply(body)
                if not llm._wait(reply):
                    self._drop()  # shutting down
                    return
                if reply.drop:
                    self._drop()
                    return
                self._send(reply.status, llm._payload(body, reply), reply.headers)

        return Handler


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
