"""The one conftest: markers name what a test needs; the environment under test is clean.

- ``llm``, ``otelcol``, ``prometheus``, ``docker``, ``browser``: checked before each test
  (tests/support/requirements.py): skipped locally with the reason, failed when ``CI`` is set.
- ``pipeline_services``: one real store + Jaeger + collector for the whole session.
- Every test runs without the developer's trainer settings, OpenTelemetry or Agent Lightning
  variables in its process environment (tests/support/env.py declares which).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.env import LIBRARY_VARIABLES, SETTINGS_VARIABLES
from tests.support.pipeline import Pipeline, pipeline
from tests.support.requirements import CHECKS, require


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in CHECKS:
        if item.get_closest_marker(marker) is not None:
            require(marker)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        upper = name.upper()
        if upper in SETTINGS_VARIABLES or upper in LIBRARY_VARIABLES or upper.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pipeline_services() -> Iterator[Pipeline]:
    """Session-wide store + Jaeger + collector; all stopped at the end of the session, even on failure."""
    require("otelcol")
    with pipeline() as services:
        yield services
