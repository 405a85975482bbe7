"""Logging for operators: one line per meaningful event, the libraries' chatter turned down."""

from __future__ import annotations

import logging
import sys

from rich.console import Console

NOISY_LOGGERS = (
    "httpx",
    "httpx2",
    "agentlightning",
    "LiteLLM",
    "LiteLLM Proxy",
    "LiteLLM Router",
    "uvicorn",
    "openai",
    "agno",
    "opentelemetry",
)


def setup_logging(level: str, console: Console) -> None:
    handler: logging.Handler
    if console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    """Libraries log one line per HTTP request or rollout at INFO; operators want our events only.

    Called again after importing Agent Lightning, because litellm resets its loggers on import.
    """
    quiet = logging.DEBUG if logging.getLogger().level == logging.DEBUG else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
