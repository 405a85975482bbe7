"""The exporter's resource: the SDK's own OTEL_* variables win, our default only fills a gap."""

from __future__ import annotations

import pytest

from trainer.telemetry.otlp import DEFAULT_SERVICE_NAME, service_resource


def test_default_service_name_without_the_environment() -> None:
    assert service_resource({"service.version": "1"}).attributes["service.name"] == DEFAULT_SERVICE_NAME


def test_otel_service_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "my-trainer")
    assert service_resource({}).attributes["service.name"] == "my-trainer"


def test_otel_resource_attributes_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment.environment=ci")
    attributes = service_resource({"service.version": "1"}).attributes
    assert (attributes["service.name"], attributes["deployment.environment"]) == ("from-attrs", "ci")
    assert attributes["service.version"] == "1"
