"""Telemetry: the rollout's root span, OTLP export to the collector, runner tracers and Prometheus metrics."""
