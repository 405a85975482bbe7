"""The docker compose stack, for real: compose.yaml with the stack's images, a tiny training.

Two kinds of test:

- compose.yaml itself (needs the docker CLI and the compose v2 plugin, no engine): it is valid with
  no .env, every trainer setting reaches the trainer, images are pinned, ports are on loopback.
- the running stack (markers ``docker`` and ``slow``; needs an engine and the images, which
  ``scripts/build_images.sh`` builds when missing): collector, Jaeger, store, Prometheus and the
  model come up healthy; ``docker compose run train --dry-run`` passes; a tiny training survives a
  collector restart and exits 0, with no span lost in the store or Jaeger, its rewards and spans in
  the store, its traces in Jaeger (through the published loopback port), its best prompt in the
  ``outputs`` volume and its apo_* and span metrics in Prometheus; a second training leaves its
  rollouts to two ``runner`` containers (both do some) and survives a Jaeger restart with no span
  lost; ``down -v`` leaves nothing behind.

Without an engine these tests skip with a message; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.support import REPO
from tests.support.jaeger import jaeger_services, jaeger_tag, jaeger_traces
from tests.support.net import http_json
from tests.support.requirements import require
from tests.support.stack import SCRIPTED_LLM, SCRIPTED_SERVICES, TINY_TRAINING, Stack, prom_query, stack_images
from tests.support.store import store_spans
from tests.support.waiting import wait_until
from trainer.config import Settings

SERVICE_NAME = "apo-trainer"
TRAIN_TIMEOUT = 1800.0  # measured 15 min on 2 busy cores (other trainings running); CPU-bound
RESTART_AFTER_ROWS = 4  # restart a service once this many rollouts of the run are done


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
    require("compose")
    proc = compose_config("--format", "json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


# --------------------------------------------------------------------------- compose.yaml, no engine


def test_compose_file_is_valid_without_env_file() -> None:
    require("compose")
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
    assert published == {"jaeger": 16686, "prometheus": 9090, "grafana": 3000, "store-dashboard": 4747}
    assert "store" not in published, "the store's API has no authentication: never publish it"


def test_services_are_init_wrapped_and_trainer_unprivileged(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    for name in ("train", "llm", "store", "store-dashboard"):
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


def test_a_training_brings_up_the_way_to_its_dashboard(compose_model: dict[str, Any]) -> None:
    """`up train` and `run train` start Prometheus always, and Grafana unless its profile leaves it out."""
    needs = compose_model["services"]["train"]["depends_on"]
    assert needs["prometheus"]["required"] is True
    assert needs["grafana"]["required"] is False  # absent from the model (GRAFANA_PROFILE set): skipped
    # The trainer's metrics come from the collector, where every training pushes them.
    prom_config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    (trainer_job,) = [job for job in prom_config["scrape_configs"] if job["job_name"] == "trainer"]
    assert trainer_job["static_configs"] == [{"targets": ["collector:8890"]}]
    assert compose_model["services"]["train"]["environment"]["METRICS_PORT"] == "0"


def test_grafana_profile_keeps_grafana_out_only_when_set() -> None:
    require("compose")

    def services(*args: str, **env: str) -> set[str]:
        proc = compose_config(*args, "--services", env=env)
        assert proc.returncode == 0, proc.stderr
        return set(proc.stdout.split())

    assert "grafana" in services()  # the default: Grafana starts with the stack
    without = services(GRAFANA_PROFILE="grafana")  # what `make images` writes where it has no image
    assert "grafana" not in without and {"prometheus", "train", "collector"} <= without
    assert "grafana" in services(GRAFANA_PROFILE="grafana", COMPOSE_PROFILES="grafana")  # `--profile grafana`


# --------------------------------------------------------------------------- the running stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The stack without Grafana, up and healthy; afterwards `down -v` must leave nothing."""
    running = Stack(stack_images(), services=SCRIPTED_SERVICES, env={**TINY_TRAINING, **SCRIPTED_LLM})
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
    # The real embedded model of the `llm` service answers the dry run's probe.
    proc = stack.run(
        "run", "--rm", "train", "--dry-run", timeout=300, check=False, OPENAI_BASE_URL="http://llm:8080/v1"
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "dry run OK" in output
    assert "http://llm:8080/v1" in output
    assert "http://store:4747" in output


@pytest.mark.docker
@pytest.mark.slow
def test_store_dashboard_is_on_loopback_and_read_only(stack: Stack) -> None:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    page = opener.open(stack.store_dashboard_url + "/", timeout=10).read()
    assert b"<html" in page.lower()
    assert "items" in http_json(stack.store_dashboard_url + "/v1/agl/rollouts")
    write = urllib.request.Request(
        stack.store_dashboard_url + "/v1/agl/queues/rollouts/enqueue", data=b"{}", method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(write, timeout=10)
    assert refused.value.code == 405


@dataclass
class Training:
    """One training in the stack, read back after it exited."""

    run_id: str
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    store_spans: dict[str, list[Any]]  # rollout id -> its spans in the store, read once after the exit
    wall: float
    downtime: float
    container: str
    exited: float  # epoch seconds


def train_with_restart(stack: Stack, restart: str, **env: str) -> Training:
    """``up -d train`` (``env`` on top of the stack's), restart ``restart`` once the run's ledger
    has RESTART_AFTER_ROWS rollouts, wait for the exit; fails with the logs unless it exits 0."""
    known = set(ledger_counts(stack))
    started = time.monotonic()
    stack.run("up", "--detach", "train", timeout=300, **env)
    cid = stack.container_id("train")

    def new_run_far_enough() -> str | None:
        if not container_running(cid):
            return "exited"
        for run_id, rows in ledger_counts(stack).items():
            if run_id not in known and rows >= RESTART_AFTER_ROWS:
                return run_id
        return None

    wait_until(
        new_run_far_enough,
        TRAIN_TIMEOUT,
        what=f"{RESTART_AFTER_ROWS} rollouts of the new run",
        interval=2,
        errors=(OSError, ValueError, KeyError),
    )
    down_started = time.monotonic()
    stack.run("restart", restart, timeout=120)
    downtime = time.monotonic() - down_started
    code = stack.wait_exit("train", TRAIN_TIMEOUT)
    exited = time.time()
    wall = time.monotonic() - started
    logs = stack.run("logs", "--no-color", "train", check=False).stdout
    assert code == 0, f"train exited {code} after {wall:.0f}s:\n{logs[-6000:]}"
    summary = json.loads(read_file(cid, "/data/outputs/summary.json"))
    ledger = read_file(cid, f"/data/outputs/runs/{summary['run_id']}/rollouts.jsonl")
    rows = [json.loads(line) for line in ledger.splitlines() if line.strip()]
    assert len(rows) == summary["rollouts"] > 0, summary
    store_url = f"http://{stack.container_ip('store')}:4747"
    in_store = {row["rollout_id"]: store_spans(store_url, row["rollout_id"]) for row in rows}
    return Training(summary["run_id"], summary, rows, in_store, wall, downtime, cid, exited)


def ledger_counts(stack: Stack) -> dict[str, int]:
    """Rollouts per run in the `outputs` volume (through the running train container)."""
    script = (
        'for d in /data/outputs/runs/*/; do [ -d "$d" ] && '
        'echo "$(basename "$d") $(cat "$d"rollouts.jsonl 2>/dev/null | wc -l)"; done; true'
    )
    proc = stack.run("exec", "-T", "train", "sh", "-c", script, check=False, timeout=60)
    counts = {}
    for line in proc.stdout.splitlines():
        run_id, _, rows = line.partition(" ")
        if rows.strip().isdigit():
            counts[run_id] = int(rows)
    return counts


def container_running(cid: str) -> bool:
    proc = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", cid], capture_output=True, text=True)
    return proc.stdout.strip() == "true"


def spans_lost(stack: Stack, training: Training) -> dict[str, int]:
    """Spans the run's rollouts ended (counted where they were created) minus what each sink holds."""
    rollout_ids = {row["rollout_id"] for row in training.rows}
    exported = sum(row["spans"] for row in training.rows)
    # The reward annotation goes straight into the store, not through the collector: not counted.
    in_store = sum(
        1 for spans in training.store_spans.values() for s in spans if not s.name.startswith("agentlightning.")
    )

    def jaeger_count() -> int:
        spans = [span for trace in jaeger_traces(stack.jaeger_url, SERVICE_NAME) for span in trace["spans"]]
        return sum(1 for span in spans if jaeger_tag(span, "agentlightning.rollout_id") in rollout_ids)

    # The collector's Jaeger exporter may still be retrying what a restart held back.
    deadline = time.monotonic() + 60
    in_jaeger = jaeger_count()
    while in_jaeger < exported and time.monotonic() < deadline:
        time.sleep(2)
        in_jaeger = jaeger_count()
    return {"exported": exported, "store": exported - in_store, "jaeger": exported - in_jaeger}


def assert_rewards_in_store(training: Training) -> None:
    from agentlightning.emitter.reward import find_final_reward

    for row in training.rows:
        spans = training.store_spans[row["rollout_id"]]
        assert find_final_reward(spans) == row["reward"], row["rollout_id"]
        assert any(s.name == "math_rollout" for s in spans), row["rollout_id"]


@pytest.mark.docker
@pytest.mark.slow
def test_training_through_the_stack_survives_a_collector_restart(stack: Stack) -> None:
    training = train_with_restart(stack, "collector")
    lost = spans_lost(stack, training)
    print(
        f"\ntraining in the stack: {training.wall:.0f}s, {len(training.rows)} rollouts; collector restarted "
        f"({training.downtime:.1f}s): {lost['exported']} spans exported, lost in the store {lost['store']}, "
        f"lost in Jaeger {lost['jaeger']}; memory now: {stack.peak_memory()}"
    )
    assert lost == {"exported": lost["exported"], "store": 0, "jaeger": 0}
    # Three spans a rollout (root, agent run, LLM call); a rollout the cache answered has its root only.
    assert lost["exported"] >= sum(1 if r["cache_hit"] else 3 for r in training.rows)
    assert training.summary["apo_span_reads"]["incomplete"] == 0
    # `up train`, the collector restarted mid-run: every value still reached the dashboards.
    empty = empty_trainer_panels(stack, training.exited)
    assert not empty, "trainer panels without data after `up train`:\n" + "\n".join(empty)

    # The best prompt and the summary are in the `outputs` volume.
    best = read_file(training.container, "/data/outputs/best_prompt.txt")
    assert best.strip(), "best_prompt.txt is empty"
    assert training.summary["best_prompt_version"], training.summary
    assert training.summary["tracing"] == "collector http://collector:4318", training.summary["tracing"]
    assert_rewards_in_store(training)

    # Traces of service apo-trainer in Jaeger (published loopback port), with rollout ids.
    assert SERVICE_NAME in jaeger_services(stack.jaeger_url)
    names = {s["operationName"] for t in jaeger_traces(stack.jaeger_url, SERVICE_NAME) for s in t["spans"]}
    assert {"math_rollout", "math_solver.arun", "OpenAILike.ainvoke"} <= names, names

    # Prometheus scraped the trainer: apo_* metrics, and the collector's span metrics. The trainer
    # has exited, so its series are stale now: look back over the run.
    apo = prom_query(stack.prometheus_url, 'count by (__name__) (last_over_time({__name__=~"apo_.+"}[1h]))')
    found = {series["metric"]["__name__"] for series in apo}
    for metric in ("apo_rollouts_total", "apo_rollout_reward_bucket", "apo_best_val_score", "apo_test_score"):
        assert metric in found, f"{metric} not in Prometheus (found {sorted(found)})"
    exemplars = http_json(
        f"{stack.prometheus_url}/api/v1/query_exemplars?query=apo_rollout_reward_bucket&start=0&end={time.time():.0f}"
    )
    assert any(series["exemplars"] for series in exemplars["data"]), "no trace-id exemplars stored"
    up = prom_query(stack.prometheus_url, "max_over_time(up[1h])")
    jobs = {series["metric"]["job"]: float(series["value"][1]) for series in up}
    for job in ("trainer", "store", "collector", "collector-spanmetrics", "jaeger", "prometheus"):
        assert jobs.get(job) == 1.0, f"job {job} never up: {jobs}"

    def span_metric_calls() -> float:
        calls = prom_query(stack.prometheus_url, "sum(last_over_time(traces_span_metrics_calls_total[1h]))")
        return float(calls[0]["value"][1]) if calls else 0.0

    assert (
        wait_until(span_metric_calls, 60, what="span metrics in Prometheus", interval=1, errors=(OSError, ValueError))
        > 0
    )


@pytest.mark.docker
@pytest.mark.slow
def test_two_runner_containers_do_the_rollouts_and_a_jaeger_restart_loses_nothing(stack: Stack) -> None:
    # ROLLOUT_CACHE off, for the runners too (they outlive this test): the trainings before this one
    # used the same output dir, and with the cache every rollout would repeat a cached outcome (no
    # agent call, no LLM span, nothing for the latency panels).
    stack.run("--profile", "runners", "up", "--detach", "--scale", "runner=2", "runner", timeout=300,
              ROLLOUT_CACHE="false")  # fmt: skip
    runners = stack.run("ps", "--quiet", "runner").stdout.split()
    assert len(runners) == 2, runners
    training = train_with_restart(stack, "jaeger", RUNNERS="0", ROLLOUT_CACHE="false")
    lost = spans_lost(stack, training)
    hosts = {row["runner"].split(":", 1)[0] for row in training.rows}
    per_container = {cid[:12]: sum(1 for r in training.rows if r["runner"].startswith(cid[:12])) for cid in runners}
    print(
        f"\ntraining with 2 runner containers: {training.wall:.0f}s, rollouts per container {per_container}; "
        f"Jaeger restarted ({training.downtime:.1f}s): {lost['exported']} spans exported, "
        f"lost in the store {lost['store']}, lost in Jaeger {lost['jaeger']}"
    )
    assert hosts == {cid[:12] for cid in runners}, f"rollouts ran on {hosts}, runner containers {runners}"
    assert all(count > 0 for count in per_container.values()), per_container
    assert lost == {"exported": lost["exported"], "store": 0, "jaeger": 0}
    assert training.summary["apo_span_reads"]["incomplete"] == 0
    assert_rewards_in_store(training)
    empty = empty_trainer_panels(stack, training.exited)
    assert not empty, "trainer panels without data with runner containers:\n" + "\n".join(empty)
    # Runners are long-lived: still serving after the training ended.
    assert all(container_running(cid) for cid in runners)


def empty_trainer_panels(stack: Stack, exited: float) -> list[str]:
    """Training-dashboard queries without data, evaluated a few scrapes after the training exited
    (every value was pushed to the collector before it exited; Prometheus reads that every 5 s)."""
    from tests.telemetry.test_dashboards import training_panels_without_data

    at = exited + 12
    time.sleep(max(0.0, at - time.time()))
    return training_panels_without_data(lambda expr: prom_query(stack.prometheus_url, expr, at=at))


@pytest.mark.docker
@pytest.mark.slow
def test_a_training_started_with_run_fills_every_trainer_panel(stack: Stack) -> None:
    """The README's way to pass flags (`run --rm train FLAGS`): a container no scrape can name."""
    started = time.monotonic()
    # ROLLOUT_CACHE off, as for the runner containers (still serving): see the test above.
    proc = stack.run("run", "--rm", "-e", "ROLLOUT_CACHE=false", "train", "--iterations", "1",
                     timeout=TRAIN_TIMEOUT, check=False)  # fmt: skip
    exited = time.time()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    summary = json.loads(
        stack.run("run", "--rm", "-T", "--no-deps", "--entrypoint", "cat", "train", "/data/outputs/summary.json").stdout
    )
    empty = empty_trainer_panels(stack, exited)
    run = f'exported_instance="{summary["run_id"]}"'
    rollouts = prom_query(stack.prometheus_url, f'sum(apo_rollouts_total{{job="trainer", {run}}})', at=exited + 12)
    assert rollouts and float(rollouts[0]["value"][1]) == summary["rollouts"], rollouts
    wall = time.monotonic() - started
    print(f"\n`run --rm train`: {wall:.0f}s, {summary['rollouts']} rollouts, empty panels: {empty}")
    assert not empty, "trainer panels without data after `docker compose run --rm train`:\n" + "\n".join(empty)


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
