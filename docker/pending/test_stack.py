"""The docker compose stack, for real: compose.yaml with the stack's images, a tiny training.

Two kinds of test:

- compose.yaml itself (needs the docker CLI and the compose v2 plugin, no engine): it is valid with
  no .env, every trainer setting reaches the trainer, images are pinned, ports are on loopback.
- the running stack (markers ``docker`` and ``slow``; needs an engine and the images, which
  ``scripts/build_images.sh`` builds when missing): collector, Jaeger, store, Prometheus and the
  model come up healthy; ``docker compose run train --dry-run`` passes; a tiny training exits 0;
  its traces are in Jaeger (through the published loopback port), its best prompt is in the
  ``outputs`` volume, its apo_* metrics are in Prometheus; ``down -v`` leaves nothing behind.

Without an engine these tests skip with a message; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from tests.stack import (
    REPO,
    Stack,
    http_json,
    jaeger_services,
    jaeger_traces,
    prom_query,
    require_compose_cli,
    require_engine,
    span_tag,
    stack_images,
    wait_until,
)

from trainer.config import Settings

SERVICE_NAME = "apo-trainer"
# The README's tiny configuration: one round, one parent, two candidates.
TINY = {
    "ITERATIONS": "1",
    "BEAM_WIDTH": "1",
    "BRANCH_FACTOR": "2",
    "TRAIN_SIZE": "4",
    "GRADIENT_BATCH_SIZE": "2",
    "VAL_SIZE": "6",
    "VAL_BATCH_SIZE": "6",
    "TEST_SIZE": "6",
    # The embedded model as optimizer writes until its cap: a smaller cap keeps the test short.
    "OPTIMIZER_MAX_TOKENS": "128",
}
TRAIN_TIMEOUT = 1800.0  # measured 15 min on 2 busy cores (other trainings running); CPU-bound


def compose_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    # What compose.yaml says by itself: no .env, no image or project variables of the caller.
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPOSE_", "TRAINER_", "GF_")) and not k.endswith(("_IMAGE", "_PORT"))
    }
    return subprocess.run(
        ["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
         "--env-file", "/dev/null", "config", *args],
        capture_output=True, text=True, env={**clean, **(env or {})}, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def compose_model() -> dict[str, Any]:
    require_compose_cli()
    proc = compose_config("--format", "json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


# --------------------------------------------------------------------------- compose.yaml, no engine


def test_compose_file_is_valid_without_env_file() -> None:
    require_compose_cli()
    proc = compose_config("-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", f"compose warns: {proc.stderr}"


def test_every_trainer_setting_reaches_the_trainer() -> None:
    raw = yaml.safe_load((REPO / "compose.yaml").read_text())
    passed = set(raw["x-trainer-env"])
    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in passed)
    assert not missing, f"compose.yaml x-trainer-env lacks {missing} (trainer/config.py settings)"
    for service in ("train", "runner"):
        env = raw["services"][service]["environment"]
        assert passed <= set(env), f"{service} does not merge x-trainer-env"


def test_images_are_pinned_and_overridable(compose_model: dict[str, Any]) -> None:
    raw = (REPO / "compose.yaml").read_text()
    for var in ("TRAINER_IMAGE", "COLLECTOR_IMAGE", "JAEGER_IMAGE", "PROMETHEUS_IMAGE", "GRAFANA_IMAGE"):
        assert "${" + var + ":-" in raw, f"{var} does not select an image"
    for name, service in compose_model["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"
    images = {name: service["image"] for name, service in compose_model["services"].items()}
    assert images["collector"] == "otel/opentelemetry-collector-contrib:0.161.0"
    assert images["jaeger"] == "jaegertracing/jaeger:2.13.0"
    assert images["train"] == "apo-trainer:0.1.0"


def test_published_ports_are_loopback_only(compose_model: dict[str, Any]) -> None:
    published = {}
    for name, service in compose_model["services"].items():
        for port in service.get("ports") or []:
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published[name] = int(port["target"])
    assert published == {"jaeger": 16686, "prometheus": 9090, "grafana": 3000}
    assert "store" not in published, "the store's API has no authentication: never publish it"


def test_services_are_init_wrapped_and_trainer_unprivileged(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    for name in ("train", "llm", "store"):
        assert services[name].get("init") is True, f"{name}: a Python PID 1 ignores SIGTERM"
        assert services[name]["deploy"]["resources"]["limits"]["memory"], name
    dockerfile = (REPO / "trainer" / "Dockerfile").read_text()
    assert "\nUSER apo\n" in dockerfile
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in dockerfile


def test_grafana_refuses_to_start_without_admin_password(compose_model: dict[str, Any]) -> None:
    """The entrypoint guard (no engine needed: its shell script runs here, with /run.sh absent)."""
    entrypoint = compose_model["services"]["grafana"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    # `compose config` prints the file's `$$` escapes as they are; the container gets `$`.
    script, name = entrypoint[2].replace("$$", "$"), entrypoint[3]
    empty = subprocess.run(["/bin/sh", "-c", script, name], capture_output=True, text=True,
                           env={"GF_SECURITY_ADMIN_PASSWORD": ""})  # fmt: skip
    assert empty.returncode == 1
    assert "GF_SECURITY_ADMIN_PASSWORD is not set" in empty.stderr
    given = subprocess.run(["/bin/sh", "-c", script, name], capture_output=True, text=True,
                           env={"GF_SECURITY_ADMIN_PASSWORD": "s3cret"})  # fmt: skip
    assert given.returncode == 127 and "/run.sh" in given.stderr  # it got as far as exec'ing Grafana


# --------------------------------------------------------------------------- the running stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The stack without Grafana, up and healthy; afterwards `down -v` must leave nothing."""
    require_engine()
    running = Stack(stack_images(), env=TINY)
    seconds = running.start()
    print(f"\nstack up and healthy in {seconds:.1f}s")
    try:
        yield running
    finally:
        running.down()
    assert running.leftovers() == {"containers": [], "volumes": [], "networks": []}


@pytest.mark.docker
@pytest.mark.slow
def test_dry_run_in_the_stack(stack: Stack) -> None:
    proc = stack.run("run", "--rm", "train", "--dry-run", timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "dry run OK" in output
    assert "http://llm:8080/v1" in output
    assert "http://store:4747" in output


@pytest.mark.docker
@pytest.mark.slow
def test_training_through_the_stack(stack: Stack) -> None:
    started = time.monotonic()
    stack.run("up", "--detach", "train", timeout=300)
    code = stack.wait_exit("train", TRAIN_TIMEOUT)
    wall = time.monotonic() - started
    logs = stack.run("logs", "--no-color", "train", check=False).stdout
    assert code == 0, f"train exited {code} after {wall:.0f}s:\n{logs[-6000:]}"

    # The best prompt and the summary are in the `outputs` volume.
    cid = stack.container_id("train")
    best = read_file(cid, "/data/outputs/best_prompt.txt")
    summary = json.loads(read_file(cid, "/data/outputs/summary.json"))
    assert best.strip(), "best_prompt.txt is empty"
    assert summary["rollouts"] > 0 and summary["best_prompt_version"], summary
    assert summary["tracing"] == "collector http://collector:4318", summary["tracing"]

    # Traces of service apo-trainer reached Jaeger (published loopback port), with rollout ids.
    services = wait_until("apo-trainer in Jaeger", lambda: SERVICE_NAME in jaeger_services(stack.jaeger_url), 60)
    assert services
    traces = jaeger_traces(stack.jaeger_url, SERVICE_NAME)
    spans = [span for trace in traces for span in trace["spans"]]
    names = {span["operationName"] for span in spans}
    assert "math_rollout" in names, names
    assert any(span_tag(span, "agentlightning.rollout_id") for span in spans)

    # Prometheus scraped the trainer: apo_* metrics, and the collector's span metrics. The trainer
    # has exited, so its series are stale now: look back over the run.
    apo = prom_query(stack.prometheus_url, 'count by (__name__) (last_over_time({__name__=~"apo_.+"}[1h]))')
    found = {series["metric"]["__name__"] for series in apo}
    for metric in ("apo_rollouts_total", "apo_best_val_score", "apo_test_score", "apo_run_info"):
        assert metric in found, f"{metric} not in Prometheus (found {sorted(found)})"
    exemplars = http_json(
        f"{stack.prometheus_url}/api/v1/query_exemplars?query=apo_rollout_reward_bucket&start=0&end={time.time():.0f}"
    )
    assert any(series["exemplars"] for series in exemplars["data"]), "no trace-id exemplars stored"
    up = prom_query(stack.prometheus_url, "max_over_time(up[1h])")
    jobs = {series["metric"]["job"]: float(series["value"][1]) for series in up}
    for job in ("trainer", "store", "collector", "collector-spanmetrics", "jaeger", "prometheus"):
        assert jobs.get(job) == 1.0, f"job {job} never up: {jobs}"
    calls = prom_query(stack.prometheus_url, "sum(last_over_time(traces_span_metrics_calls_total[1h]))")
    assert calls and float(calls[0]["value"][1]) > 0

    print(f"\ntraining through the stack: {wall:.0f}s, {len(traces)} traces; memory: {stack.peak_memory()}")


def read_file(container: str, path: str) -> str:
    """A file of a (possibly stopped) container: `docker cp` writes it as a tar stream."""
    import io
    import tarfile

    proc = subprocess.run(["docker", "cp", f"{container}:{path}", "-"], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        member = tar.next()
        assert member is not None
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read().decode("utf-8")
