#!/usr/bin/env python3
"""Container health check of the trainer image: GET a URL, healthy on HTTP 2xx.

Usage: apo-healthcheck [URL]

URL defaults to $HEALTHCHECK_URL, else to the trainer's metrics endpoint
(http://127.0.0.1:$METRICS_PORT/metrics; METRICS_PORT defaults to 9464). One image serves several
roles, so docker compose passes the URL of each: the embedded model's /health, the store's
/v1/agl/health, the trainer's /metrics. Standard library only: it starts in ~50 ms and needs
neither curl nor the trainer's dependencies. Exit 0 = healthy, 1 = not (the reason on stderr).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("HEALTHCHECK_URL", "")
    if not url:
        url = f"http://127.0.0.1:{os.environ.get('METRICS_PORT') or '9464'}/metrics"
    timeout = float(os.environ.get("HEALTHCHECK_TIMEOUT", "3"))
    # No proxy: the URL is this container's own port, whatever HTTP(S)_PROXY says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            if 200 <= resp.status < 300:
                return 0
            print(f"{url}: HTTP {resp.status}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
