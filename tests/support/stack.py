"""The docker compose stack (compose.yaml) for tests: engine check, images, a private project.

``require_engine()`` skips a test when no Docker engine answers (or fails it when ``CI`` is set).
``stack_images()`` returns the image variables (TRAINER_IMAGE=...) of the local images that
``scripts/build_images.sh`` builds (quick when they are up to date), unless the environment already
names them. ``Stack`` is testcontainers' ``DockerCompose`` on the repository's compose.yaml with a
project name of its own and free loopback ports, so it never touches a stack the developer runs;
leaving it runs ``docker compose down --volumes --remove-orphans`` for the whole project.

testcontainers needs ``TESTCONTAINERS_RYUK_DISABLED=true`` here (its reaper image cannot be
pulled without a registry) and ``TESTCONTAINERS_CONNECTION_MODE=docker_host`` (published ports
are reached on the host's loopback); ``Stack`` sets both.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from tests.support import REPO
from tests.support.net import free_port, http_json
from tests.support.requirements import problem

REPO = REPO
BUILD_IMAGES = REPO / "scripts" / "build_images.sh"
IMAGE_VARS = ("TRAINER_IMAGE", "TRAINER_BASE_IMAGE", "COLLECTOR_IMAGE", "JAEGER_IMAGE", "PROMETHEUS_IMAGE")
# scripts/build_images.sh prints it too: Grafana has no local image, so its profile keeps it out of
# `up train` and `run train` (which would otherwise try to pull it). Tests never start Grafana.
GRAFANA_PROFILE = "GRAFANA_PROFILE"
HOST = "127.0.0.1"
# Every service but Grafana (no image here) and the one-shot `train`; `runner` is in a profile.
INFRA_SERVICES = ("collector", "jaeger", "store", "store-dashboard", "prometheus", "llm")

# The tiny training of the stack tests (and `make bench-stack QUICK=1`): one round, one parent,
# two candidates. The embedded model as optimizer writes until its cap: a smaller cap keeps it short.
TINY_TRAINING = {
    "ITERATIONS": "1",
    "BEAM_WIDTH": "1",
    "BRANCH_FACTOR": "2",
    "TRAIN_SIZE": "4",
    "GRADIENT_BATCH_SIZE": "2",
    "VAL_SIZE": "6",
    "VAL_BATCH_SIZE": "6",
    "TEST_SIZE": "6",
    "OPTIMIZER_MAX_TOKENS": "128",
}

# The tests' trainings talk to the scripted model (tests/support/compose.scripted.yaml) instead of
# the embedded one: the stack's plumbing is what they test, not the model.
SCRIPTED_LLM = {
    "COMPOSE_FILE": "compose.yaml:tests/support/compose.scripted.yaml",
    "OPENAI_BASE_URL": "http://scripted-llm:8080/v1",
}
SCRIPTED_SERVICES = (*INFRA_SERVICES, "scripted-llm")

T = TypeVar("T")


def engine_problem() -> str | None:
    """Why the stack cannot run here (no docker CLI, no compose v2, no engine), or None."""
    return problem("docker")


def parse_env_lines(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key in (*IMAGE_VARS, GRAFANA_PROFILE):
            values[key] = value
    return values


def stack_images() -> dict[str, str]:
    """The image variables for compose: from the environment if all are set, else the local images
    of scripts/build_images.sh (which builds what is missing or stale; ~1 s when nothing is)."""
    given = {key: os.environ[key] for key in IMAGE_VARS if os.environ.get(key)}
    if {"TRAINER_IMAGE", "COLLECTOR_IMAGE", "JAEGER_IMAGE", "PROMETHEUS_IMAGE"} <= given.keys():
        return given
    proc = subprocess.run([str(BUILD_IMAGES)], cwd=REPO, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        message = f"scripts/build_images.sh failed:\n{proc.stderr[-3000:]}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return parse_env_lines(proc.stdout)


@contextmanager
def _patched_environ(values: Mapping[str, str]) -> Any:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _compose_class() -> type:
    from testcontainers.compose import DockerCompose

    return DockerCompose


@dataclass
class Stack:
    """compose.yaml as a private project: ``with Stack(images) as stack: stack.up(...)``.

    ``env`` is the environment of every compose command (and so of the containers, through the
    pass-through variables of compose.yaml): the image variables, free loopback host ports, a
    project name of its own, and whatever the test adds (training settings).
    """

    images: Mapping[str, str]
    services: Sequence[str] = INFRA_SERVICES
    project: str = field(default_factory=lambda: f"apo-trainer-test-{secrets.token_hex(3)}")
    env: dict[str, str] = field(default_factory=dict)
    compose: Any = None

    def __post_init__(self) -> None:
        self.ports = {
            name: free_port() for name in ("JAEGER_UI_PORT", "PROMETHEUS_PORT", "GRAFANA_PORT", "STORE_DASHBOARD_PORT")
        }
        self.env = {
            "COMPOSE_PROJECT_NAME": self.project,
            "TESTCONTAINERS_RYUK_DISABLED": "true",
            "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
            GRAFANA_PROFILE: os.environ.get(GRAFANA_PROFILE) or "grafana",
            **dict(self.images),
            **{key: str(port) for key, port in self.ports.items()},
            **self.env,
        }

    @property
    def jaeger_url(self) -> str:
        return f"http://{HOST}:{self.ports['JAEGER_UI_PORT']}"

    @property
    def store_dashboard_url(self) -> str:
        return f"http://{HOST}:{self.ports['STORE_DASHBOARD_PORT']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{HOST}:{self.ports['PROMETHEUS_PORT']}"

    def run(self, *args: str, timeout: float = 600, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        """``docker compose ARGS`` in the repository, with this stack's environment (+ ``env``)."""
        full_env = {**os.environ, **self.env, **env}
        proc = subprocess.run(
            ["docker", "compose", *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
            )
        return proc

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def start(self) -> float:
        """``up --wait`` of ``services`` through testcontainers; returns the seconds it took."""
        started = time.monotonic()
        with _patched_environ(self.env):
            self.compose = _compose_class()(context=str(REPO), services=list(self.services), wait=True)
            try:
                self.compose.start()
            except subprocess.CalledProcessError as exc:
                logs = self.run("logs", "--no-color", "--tail", "60", check=False).stdout
                self.down()
                raise AssertionError(
                    f"stack did not become ready: {exc.stderr.decode(errors='replace')[-2000:]}\n{logs[-6000:]}"
                ) from None
        return time.monotonic() - started

    def down(self) -> None:
        """Remove every container, network and volume of the project (not only ``services``)."""
        # The profile makes `runner` containers part of the model, so they go too.
        self.run("--profile", "runners", "down", "--volumes", "--remove-orphans", "--timeout", "20",
                 check=False, timeout=300)  # fmt: skip

    def container_id(self, service: str) -> str:
        ids = self.run("ps", "--all", "--quiet", service).stdout.split()
        assert ids, f"no container of service {service}"
        return ids[0]

    def container_ip(self, service: str) -> str:
        """The address of ``service``'s container on the project network (reachable from this host)."""
        proc = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
             self.container_id(service)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        addresses = proc.stdout.split()
        assert addresses, f"{service} has no address: {proc.stderr}"
        return addresses[0]

    def wait_exit(self, service: str, timeout: float) -> int:
        """Exit code of ``service``'s container once it stops (docker wait)."""
        cid = self.container_id(service)
        proc = subprocess.run(["docker", "wait", cid], capture_output=True, text=True, timeout=timeout)
        return int(proc.stdout.strip())

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, cmd in {
            "containers": ["docker", "ps", "--all", "--quiet", "--filter", label],
            "volumes": ["docker", "volume", "ls", "--quiet", "--filter", label],
            "networks": ["docker", "network", "ls", "--quiet", "--filter", label],
        }.items():
            found[kind] = subprocess.run(cmd, capture_output=True, text=True).stdout.split()
        return found

    def peak_memory(self) -> dict[str, str]:
        """Memory use per container now (docker stats --no-stream); benchmarks/stack.py reports peaks."""
        proc = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
            capture_output=True,
            text=True,
        )
        return {
            line.split()[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith(self.project)
        }


# --------------------------------------------------------------------------- query helpers


def prom_query(base: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    data = http_json(f"{base}/api/v1/query?{urllib.parse.urlencode(params)}")
    assert data.get("status") == "success", data
    return list(data["data"]["result"])
