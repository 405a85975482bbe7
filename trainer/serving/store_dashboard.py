"""A read-only door to the Agent Lightning store: its dashboard, without its write API.

The store serves its web dashboard and its HTTP API on one port, and the API has no
authentication: anyone who reaches it can enqueue rollouts, rewrite resources or add spans. The
dashboard itself only reads (GET ``/``, ``/assets/*`` and GET ``/v1/agl/*``), and every write of
the API is a POST. So this proxy forwards GET requests to the store and refuses every other method
with 405: published on the host's loopback (``apo-trainer store-dashboard``, compose service
``store-dashboard``), it shows the dashboard while the store stays on the internal network.

Standard library only; one thread per request; responses are streamed, so a large span listing
is not held in memory.
"""

from __future__ import annotations

import logging
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

READ_METHODS = ("GET",)  # the store itself answers HEAD with 405
# Hop-by-hop headers (RFC 9110, 7.6.1) are the proxy's own business, never forwarded.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip


class ReadOnlyProxy:
    """Serves ``upstream`` read-only on ``host:port``; ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="store-dashboard", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ReadOnlyProxy:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> ReadOnlyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._forward(self)

            def _refuse(self) -> None:
                body = (
                    f"{self.command} refused: this is a read-only view of the store "
                    f"(only {', '.join(READ_METHODS)} are forwarded)\n"
                ).encode()
                self.send_response(405)
                self.send_header("Allow", ", ".join(READ_METHODS))
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _refuse

            def log_message(self, format: str, *args: Any) -> None:  # one line per asset is noise
                logger.debug("%s " + format, self.address_string(), *args)

        return Handler

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        request = urllib.request.Request(self.upstream + handler.path, headers=headers, method=handler.command)
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            response = exc  # the store's own 4xx/5xx answer, passed on as it is
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            body = f"store at {self.upstream} unreachable: {reason}\n".encode()
            handler.send_response(502)
            handler.send_header("Content-Type", "text/plain; charset=utf-8")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        with response:
            handler.send_response(response.status)
            length = response.headers.get("Content-Length")
            for key, value in response.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    handler.send_header(key, value)
            if length is not None:
                handler.send_header("Content-Length", length)
            else:
                # Unknown length: close after the body, which then ends the response.
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            shutil.copyfileobj(response, handler.wfile)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects go back to the browser as they are: following them here could leave the store."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
