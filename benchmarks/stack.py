"""Figures of the docker compose stack on this machine, printed, never asserted: `python -m benchmarks.stack`.

Figures:
- image build: `scripts/build_images.sh` wall time (a rerun with nothing changed reuses every image);
- image sizes (the images compose.yaml runs, as `docker image inspect` reports them);
- `docker compose up --wait` of collector, jaeger, store, prometheus and llm (images present) to
  every service ready (healthy, or started for the distroless ones);
- wall time of a training in the stack (`up -d train` to its exit), at the default sizes unless
  --quick (the tests' tiny configuration);
- peak memory per service over the whole run: the kernel's own high-water mark of each
  container's memory cgroup (cgroup v1 ``memory.max_usage_in_bytes`` or v2 ``memory.peak``), read
  every second while the container runs, since the cgroup goes away with the container.

Needs a Docker engine and Compose v2 (see README, Docker Compose). Runs in a private compose project
on free loopback ports and removes it (``down -v``) at the end. Grafana is not started (no image here).
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from pathlib import Path

from tests.stack import BUILD_IMAGES, REPO, TINY_TRAINING, Stack, engine_problem, parse_env_lines

CGROUP_FILES = (
    "/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes",  # cgroup v1
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak",  # cgroup v2, systemd driver
    "/sys/fs/cgroup/docker/{id}/memory.peak",  # cgroup v2, cgroupfs driver
)


class PeakMemory:
    """Polls the memory high-water mark of every container of a compose project."""

    def __init__(self, project: str, interval: float = 1.0) -> None:
        self.project = project
        self.interval = interval
        self.peaks: dict[str, int] = {}  # service -> bytes (the largest of its containers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _containers(self) -> dict[str, str]:
        proc = subprocess.run(
            ["docker", "ps", "--no-trunc", "--filter", f"label=com.docker.compose.project={self.project}",
             "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}'],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)

    def _run(self) -> None:
        while not self._stop.is_set():
            for cid, service in self._containers().items():
                for pattern in CGROUP_FILES:
                    try:
                        value = int(Path(pattern.format(id=cid)).read_text().strip())
                    except (OSError, ValueError):
                        continue
                    self.peaks[service] = max(self.peaks.get(service, 0), value)
                    break
            self._stop.wait(self.interval)


def image_size(image: str) -> int:
    proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True)
    return int(proc.stdout.strip() or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tests' tiny training instead of the default sizes")
    args = parser.parse_args()
    problem = engine_problem()
    if problem:
        raise SystemExit(f"benchmarks.stack: {problem}")

    started = time.monotonic()
    built = subprocess.run([str(BUILD_IMAGES)], cwd=REPO, capture_output=True, text=True, timeout=3600)
    if built.returncode != 0:
        raise SystemExit(f"scripts/build_images.sh failed:\n{built.stderr[-3000:]}")
    images = parse_env_lines(built.stdout)
    print(f"images ready (scripts/build_images.sh): {time.monotonic() - started:.1f} s")
    for var in ("TRAINER_IMAGE", "COLLECTOR_IMAGE", "JAEGER_IMAGE", "PROMETHEUS_IMAGE"):
        print(f"  {images[var]:32} {image_size(images[var]) / 1e6:8.0f} MB")

    stack = Stack(images, env=dict(TINY_TRAINING) if args.quick else {})
    with PeakMemory(stack.project) as memory:
        try:
            print(f"compose up --wait to all services ready: {stack.start():.1f} s")
            t0 = time.monotonic()
            stack.run("up", "--detach", "train", timeout=300)
            code = stack.wait_exit("train", 4 * 3600)
            wall = time.monotonic() - t0
            sizes = "tiny (--quick)" if args.quick else "default sizes"
            print(f"training in the stack ({sizes}): {wall:.0f} s, exit code {code}")
            if code != 0:
                print(stack.run("logs", "--no-color", "--tail", "40", "train", check=False).stdout)
        finally:
            stack.down()
    print("peak memory per service (cgroup high-water mark):")
    for service, peak in sorted(memory.peaks.items(), key=lambda item: -item[1]):
        print(f"  {service:12} {peak / 2**20:8.0f} MiB")


if __name__ == "__main__":
    main()
