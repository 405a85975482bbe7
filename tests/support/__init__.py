"""What the tests share: real processes (store, collector, Jaeger, Prometheus, the compose stack),
the trainer's CLI as a user runs it, and one of each helper (waiting, HTTP, ports, environments)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
