"""`make images` and secrets at rest: .env keeps its mode, and no .env ever enters an image.

``scripts/build_images.sh`` writes its image variables into .env through
``scripts/update_env_file.sh``, which these tests run directly (the build itself needs minutes and a
Docker engine). The image context check builds a ``FROM scratch`` image of a small context with the
repository's .dockerignore: no registry, no base image, a second.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UPDATE = REPO / "scripts" / "update_env_file.sh"
IMAGE_VARS = ["TRAINER_IMAGE=apo-local/trainer:9.9.9", "JAEGER_IMAGE=apo-local/jaeger:2.13.0"]


def update(env_file: Path, *lines: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(UPDATE), str(env_file), *lines], capture_output=True, text=True, timeout=30)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kept", [0o600, 0o640, 0o400])
def test_env_file_keeps_its_mode_and_every_other_line(tmp_path: Path, kept: int) -> None:
    env = tmp_path / ".env"
    env.write_text("OPENAI_API_KEY=sk-secret\nTRAINER_IMAGE=old\n# a comment\nAGENT_MODEL=m")  # no final newline
    env.chmod(kept)
    result = update(env, *IMAGE_VARS)
    assert result.returncode == 0, result.stderr
    assert mode(env) == kept
    assert env.read_text().splitlines() == ["OPENAI_API_KEY=sk-secret", "# a comment", "AGENT_MODEL=m", *IMAGE_VARS]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]  # no temporary file left


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_env_file_keeps_its_owner_when_root_rewrites_it(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("OPENAI_API_KEY=sk-secret\n")
    os.chown(env, 65534, 65534)  # nobody's file, rewritten by `sudo make images`
    env.chmod(0o600)
    assert update(env, *IMAGE_VARS).returncode == 0
    assert (env.stat().st_uid, env.stat().st_gid, mode(env)) == (65534, 65534, 0o600)


def test_a_new_env_file_is_private_and_a_symlinked_one_stays_a_link(tmp_path: Path) -> None:
    new = tmp_path / "new.env"
    assert update(new, *IMAGE_VARS).returncode == 0
    assert mode(new) == 0o600 and new.read_text().splitlines() == IMAGE_VARS
    real = tmp_path / "secrets" / "env"
    real.parent.mkdir()
    real.write_text("OPENAI_API_KEY=sk-secret\n")
    real.chmod(0o640)
    link = tmp_path / ".env"
    link.symlink_to(real)
    assert update(link, *IMAGE_VARS).returncode == 0
    assert link.is_symlink() and mode(real) == 0o640
    assert real.read_text().splitlines() == ["OPENAI_API_KEY=sk-secret", *IMAGE_VARS]


def test_a_bad_line_leaves_the_file_alone(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    result = update(env, "TRAINER_IMAGE=x", "not a variable")
    assert result.returncode == 2 and "not a VAR=value line" in result.stderr
    assert env.read_text() == "A=1\n"


def test_build_images_writes_env_only_through_the_helper() -> None:
    script = (REPO / "scripts" / "build_images.sh").read_text()
    assert 'scripts/update_env_file.sh "$ENV_FILE" "${env_lines[@]}"' in script
    writes = [line for line in script.splitlines() if '"$ENV_FILE"' in line and ("mv " in line or ">" in line)]
    assert writes == [], writes


@pytest.mark.docker
def test_no_env_file_enters_the_trainer_image_context(tmp_path: Path) -> None:
    context = tmp_path / "context"
    files = {
        ".env": "OPENAI_API_KEY=sk-canary",
        "trainer/.env": "OPENAI_API_KEY=sk-canary",
        "trainer/sub/.env.local": "OPENAI_API_KEY=sk-canary",
        "trainer/module.py": "x = 1\n",
        "pyproject.toml": "[project]\n",
    }
    for name, text in files.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(text)
    shutil.copy(REPO / ".dockerignore", context / ".dockerignore")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /ctx/\n")
    tag = f"apo-test/dockerignore:{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder, as build_images.sh uses
    try:
        build = subprocess.run(["docker", "build", "-q", "-f", str(dockerfile), "-t", tag, str(context)],
                               capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        assert build.returncode == 0, build.stderr
        created = subprocess.run(["docker", "create", tag, "/none"], capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        container = created.stdout.strip()
        try:
            exported = tmp_path / "fs.tar"
            subprocess.run(["docker", "export", "-o", str(exported), container], check=True, timeout=60)
            with tarfile.open(exported) as tar:
                copied = {
                    m.name.removeprefix("ctx/") for m in tar.getmembers() if m.isfile() and m.name.startswith("ctx/")
                }
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)
    assert copied == {"trainer/module.py", "pyproject.toml"}
