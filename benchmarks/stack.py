"""Figures of the docker compose stack on this machine, printed, never asserted: `python -m benchmarks.stack`.

Figures:
- image build: `scripts/build_images.sh` wall time (a rerun with nothing changed reuses every image);
- image sizes (the images compose.yaml runs, as `docker image inspect` reports them);
- `docker compose up --wait` of collector, jaeger, store, prometheus and llm (images present) to
  every service ready (healthy, or started for the distroless ones);
- wall time of a training in the stack (`up -d train` to its exit), at the default sizes unless
  --quick (the tests' tiny configuration);
- peak memory per service over the whole run, three ways, read every second while each container
  runs (its cgroup goes away with it): anonymous memory (RSS: heaps, the model's KV cache), the
  working set (usage minus inactive page cache, what ``docker stats`` shows; the model file mapped
  by llama.cpp is active cache), both sampled, and the cgroup's own high-water mark (cgroup v1
  ``memory.max_usage_in_bytes`` / v2 ``memory.peak``), which counts page cache too and so sits at
  the limit for anything that reads big files; plus OOM kills, if any.

Needs a Docker engine and Compose v2 (see README, Docker Compose). Runs in a private compose project
on free loopback ports and removes it (``down -v``) at the end. Grafana is not started (no image here).
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.stack import BUILD_IMAGES, REPO, TINY_TRAINING, Stack, engine_problem, parse_env_lines

CGROUP_DIRS = (
    "/sys/fs/cgroup/memory/docker/{id}",  # cgroup v1
    "/sys/fs/cgroup/system.slice/docker-{id}.scope",  # cgroup v2, systemd driver
    "/sys/fs/cgroup/docker/{id}",  # cgroup v2, cgroupfs driver
)


@dataclass
class Memory:
    working_set: int = 0  # peak of the samples
    rss: int = 0  # anonymous memory (heap, KV cache...), peak of the samples
    high_water: int = 0
    oom_kills: int = 0


def read_cgroup(directory: Path) -> Memory | None:
    """One sample of a container's memory cgroup; None if it is gone (or not this layout)."""
    try:
        if (directory / "memory.max_usage_in_bytes").exists():  # v1
            usage = int((directory / "memory.usage_in_bytes").read_text())
            high = int((directory / "memory.max_usage_in_bytes").read_text())
            stat = _keyed(directory / "memory.stat")
            oom = _keyed(directory / "memory.oom_control").get("oom_kill", 0)
            return Memory(usage - stat.get("total_inactive_file", 0), stat.get("total_rss", 0), high, oom)
        usage = int((directory / "memory.current").read_text())  # v2
        high = int((directory / "memory.peak").read_text())
        stat = _keyed(directory / "memory.stat")
        oom = _keyed(directory / "memory.events").get("oom_kill", 0)
        return Memory(usage - stat.get("inactive_file", 0), stat.get("anon", 0), high, oom)
    except (OSError, ValueError):
        return None


def _keyed(path: Path) -> dict[str, int]:
    pairs = (line.split() for line in path.read_text().splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}


class PeakMemory:
    """Polls the memory cgroup of every container of a compose project."""

    def __init__(self, project: str, interval: float = 1.0) -> None:
        self.project = project
        self.interval = interval
        self.peaks: dict[str, Memory] = {}  # service -> the largest of its containers
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
                for pattern in CGROUP_DIRS:
                    sample = read_cgroup(Path(pattern.format(id=cid)))
                    if sample is None:
                        continue
                    peak = self.peaks.setdefault(service, Memory())
                    peak.working_set = max(peak.working_set, sample.working_set)
                    peak.rss = max(peak.rss, sample.rss)
                    peak.high_water = max(peak.high_water, sample.high_water)
                    peak.oom_kills = max(peak.oom_kills, sample.oom_kills)
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
    print("peak memory per service, MiB: anonymous (RSS) / working set (docker stats) / high-water mark (with cache)")
    mib = 2**20
    for service, peak in sorted(memory.peaks.items(), key=lambda item: -item[1].rss):
        oom = f", {peak.oom_kills} OOM kills" if peak.oom_kills else ""
        print(
            f"  {service:16} {peak.rss / mib:6.0f} / {peak.working_set / mib:6.0f} / {peak.high_water / mib:6.0f}{oom}"
        )


if __name__ == "__main__":
    main()
