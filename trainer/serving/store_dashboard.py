"""A read-only door to the Agent Lightning store: its dashboard, without its write API.

The store serves its web dashboard and its HTTP API on one port, and the API has no
authentication: anyone who reaches it can enqueue rollouts, rewrite resources or add spans. The
dashboard itself only reads (GET ``/``, ``/assets/*`` and GET ``/v1/agl/*``), and every write of
the API is a POST. So this proxy forwards GET requests to the store and refuses every other method
with 405: published on the host's loopback (``apo-trainer store-dashboard``, compose service
``store-dashboard``), it shows the dashboard while the store stays on the internal network.

Only what a browser on this machine sends is forwarded: an origin-form request target (``/path?query``,
RFC 9112 3.2.1; anything else is a 400), joined to the configured store's origin, never parsed as
part of a URL (``GET :8080/x`` once reached any port of the store host); and only with a ``Host``
this proxy answers to (its own address, ``localhost``/``127.0.0.1``/``[::1]`` with its port, and
``allowed_hosts``), so a page that rebinds its DNS name to 127.0.0.1 gets 421 Misdirected Request,
never the store's data. A client that sends nothing is dropped after ``idle_timeout`` seconds.

Standard library only; one thread per request; responses are streamed, so a large span listing
is not held in memory.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

READ_METHODS = ("GET",)  # the store itself answers HEAD with 405
# Hop-by-hop headers (RFC 9110, 7.6.1) are the proxy's own business, never forwarded.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip
# The dashboard is same-origin: CORS headers (``agl store --cors-origins``) could only let another
# site's page read the store through this door, so they never leave it.
CORS_PREFIX = "access-control-"
IDLE_TIMEOUT = 20.0  # seconds a client may hold a connection (and a thread) without sending
# Host names that always mean this machine; served with the proxy's own port.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# Origin-form (RFC 9112 3.2.1): "/" then visible ASCII (what http.client sends on unchanged), no
# fragment. Absolute-form, authority-form, "*" and raw non-ASCII bytes are refused.
ORIGIN_FORM = re.compile(r"/[\x21\x22\x24-\x7e]*")
# A Host header value: a DNS name, IPv4 address or bracketed IPv6 address, and an optional port.
HOST_VALUE = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?")


def parse_host(value: str, default_port: int) -> tuple[str, int] | None:
    """``(name, port)`` of a ``Host`` value (lower case, ``default_port`` when it names none), or None."""
    match = HOST_VALUE.fullmatch(value.strip().lower())
    if match is None:
        return None
    return match.group(1), int(match.group(2)) if match.group(2) else default_port


class ReadOnlyProxy:
    """Serves ``upstream`` read-only on ``host:port``; ``start()``/``stop()`` or a ``with`` block.

    ``allowed_hosts``: further ``HOST[:PORT]`` values of the ``Host`` header to serve (the port
    defaults to the one listened on), e.g. the host port a container's port is published on.
    """

    def __init__(
        self,
        upstream: str,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 30.0,
        *,
        allowed_hosts: Iterable[str] = (),
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        try:
            parsed.port  # noqa: B018 (a malformed port raises only when read)
        except ValueError:
            raise ValueError(f"upstream has an invalid port: {upstream!r}") from None
        if parsed.query or parsed.fragment or parsed.username is not None:
            raise ValueError(f"upstream must be scheme://host[:port][/path], got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        # Parsed once: every request goes to this scheme and authority, its path below this base.
        self._origin = (parsed.scheme, parsed.netloc)
        self._base_path = parsed.path.rstrip("/")
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self.served_hosts = self._served_hosts(allowed_hosts)
        self._thread = threading.Thread(target=self._server.serve_forever, name="store-dashboard", daemon=True)

    def _served_hosts(self, allowed_hosts: Iterable[str]) -> frozenset[tuple[str, int]]:
        served = {(name, self.port) for name in LOOPBACK_NAMES}
        if self.host not in ("0.0.0.0", ""):  # a wildcard bind is no name a client can use
            served.add((self.host, self.port))
        for value in allowed_hosts:
            parsed = parse_host(value, self.port)
            if parsed is None:
                self._server.server_close()
                raise ValueError(f"allowed host must be HOST[:PORT], got {value!r}")
            served.add(parsed)
        return frozenset(served)

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
            # Socket timeout of every read and write (StreamRequestHandler.setup): an idle client,
            # or one that stops halfway through its request, is dropped instead of holding a thread.
            timeout = proxy.idle_timeout

            def do_GET(self) -> None:
                refusal = proxy._refusal(self)
                if refusal is not None:
                    self._plain(*refusal)
                    return
                proxy._forward(self)

            def _plain(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
                logger.info("store dashboard: %d for %s %r from %s: %s", status, self.command,
                            self.path, self.address_string(), text)  # fmt: skip
                body = f"{text}\n".encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def _refuse(self) -> None:
                text = (
                    f"{self.command} refused: this is a read-only view of the store "
                    f"(only {', '.join(READ_METHODS)} are forwarded)"
                )
                self._plain(405, text, {"Allow": ", ".join(READ_METHODS)})

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _refuse

            def log_message(self, format: str, *args: Any) -> None:  # one line per asset is noise
                logger.debug("%s " + format, self.address_string(), *args)

        return Handler

    def _refusal(self, handler: BaseHTTPRequestHandler) -> tuple[int, str] | None:
        """Why this request is not forwarded (status, text), or None when it may be."""
        if not ORIGIN_FORM.fullmatch(handler.path):
            return 400, "only origin-form request targets (/path?query, visible ASCII) are forwarded"
        hosts = handler.headers.get_all("Host") or []
        if len(hosts) != 1:
            return 400, "a request needs exactly one Host header"
        if parse_host(hosts[0], 80) not in self.served_hosts:
            # A DNS-rebinding page reaches us by IP under its own name; its Host header gives it away.
            return 421, f"this proxy does not serve Host {hosts[0]!r}"
        return None

    def upstream_url(self, target: str) -> str:
        """The store's URL of an origin-form ``target``: its path and query below the store's origin."""
        path, _, query = target.partition("?")
        return urllib.parse.urlunsplit((*self._origin, self._base_path + path, query, ""))

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        url = self.upstream_url(handler.path)
        request = urllib.request.Request(url, headers=headers, method=handler.command)
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
                if key.lower() not in HOP_BY_HOP and not key.lower().startswith(CORS_PREFIX):
                    handler.send_header(key, value)
            if length is not None:
                handler.send_header("Content-Length", length)
            else:
                # Unknown length: close after the body, which then ends the response.
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            try:
                shutil.copyfileobj(response, handler.wfile)
            except OSError as exc:  # the browser went away or stopped reading (idle_timeout)
                logger.debug("store dashboard: %s left during %s: %s", handler.address_string(), handler.path, exc)
                handler.close_connection = True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects go back to the browser as they are: following them here could leave the store."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
