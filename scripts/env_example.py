"""Write .env.example from trainer.config.Settings, so the two can never drift apart.

The file ends with a static section for the variables only Docker Compose reads (images, ports,
memory limits, Grafana's password: COMPOSE_VARS below). `--check` also checks that every
`${VAR}` compose.yaml uses is either a trainer setting or listed there, with the same default.

Usage: python scripts/env_example.py [--check]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic_core import PydanticUndefined

from trainer.config import Settings, cli_flag, env_var

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".env.example"
COMPOSE = ROOT / "compose.yaml"

HEADER = """\
# Settings of the trainer. Copy to .env and uncomment what you change; environment variables and
# command-line flags (shown in brackets where one exists) override this file.
# Generated from trainer/config.py by `python scripts/env_example.py`: edit the Field there.
#
# Real prompt gains need a capable optimizer model. A cheap setup keeps rollouts on a local or
# small model and spends a strong model only on APO's few critique/edit calls, e.g.:
#   OPTIMIZER_BASE_URL=https://api.openai.com/v1
#   OPTIMIZER_API_KEY=sk-...
#   GRADIENT_MODEL=gpt-4.1-mini
#   EDIT_MODEL=gpt-4.1-mini
#
# The last sections are read only by Docker Compose (compose.yaml), not by the trainer.
"""

SECTIONS = {
    "openai_base_url": "Language model used by the agent's rollouts",
    "optimizer_base_url": "Optimizer: APO's critique (gradient) and edit calls",
    "algorithm": "APO",
    "candidate_guard": "Candidate guard",
    "dataset_path": "Data",
    "output_dir": "Execution",
    "embedded_llm_host": "Embedded model server (used when OPENAI_BASE_URL is unset)",
}

COMPOSE_HEADER = """
# ==================================================================================================
# Docker Compose only: compose.yaml reads these; the trainer does not. In compose, the trainer
# settings above still apply, but compose.yaml points OPENAI_BASE_URL, STORE_URL and
# OTEL_EXPORTER_OTLP_ENDPOINT at its `llm`, `store` and `collector` services unless set, and
# fixes OUTPUT_DIR, METRICS_HOST and METRICS_PORT.
# No image registry (air-gapped)? `make images ENV_FILE=.env` builds local images from package
# registries and writes TRAINER_IMAGE, TRAINER_BASE_IMAGE, COLLECTOR_IMAGE, JAEGER_IMAGE and
# PROMETHEUS_IMAGE into .env, and GRAFANA_PROFILE=grafana: Grafana has no local build, so it is
# left out of `up` and `up train` (everything else, Prometheus included, starts).
# =================================================================================================="""

# Every variable compose.yaml uses that is not a trainer setting: (section, name, default exactly as
# compose.yaml resolves it, description). --check compares names and defaults with compose.yaml.
COMPOSE_VARS: tuple[tuple[str, str, str, str], ...] = (
    (
        "Grafana",
        "GF_SECURITY_ADMIN_PASSWORD",
        "",
        "Grafana's admin password. Required: Grafana refuses to start without it (anonymous users can only view).",
    ),
    ("Images", "TRAINER_VERSION", "0.1.0", "Version of the trainer image (tag and build argument)."),
    (
        "Images",
        "TRAINER_IMAGE",
        "apo-trainer:0.1.0",
        "Image of train, runner, llm and store, built from trainer/Dockerfile. Default: apo-trainer:$TRAINER_VERSION.",
    ),
    ("Images", "TRAINER_BASE_IMAGE", "python:3.11-slim-bookworm", "Base image of the trainer build."),
    ("Images", "COLLECTOR_IMAGE", "otel/opentelemetry-collector-contrib:0.161.0", "OpenTelemetry Collector."),
    ("Images", "JAEGER_IMAGE", "jaegertracing/jaeger:2.13.0", "Jaeger v2 all-in-one."),
    ("Images", "PROMETHEUS_IMAGE", "prom/prometheus:v3.15.1", "Prometheus."),
    ("Images", "GRAFANA_IMAGE", "grafana/grafana:12.4.3", "Grafana."),
    (
        "Images",
        "GRAFANA_PROFILE",
        "",
        "Empty: Grafana starts with the stack (and with `up train`). A name (e.g. grafana, which `make images` "
        "writes where Grafana's image cannot be had): Grafana starts only with `--profile NAME`.",
    ),
    ("Ports (published on 127.0.0.1 only)", "JAEGER_UI_PORT", "16686", "Jaeger's UI and query API."),
    ("Ports (published on 127.0.0.1 only)", "PROMETHEUS_PORT", "9090", "Prometheus."),
    ("Ports (published on 127.0.0.1 only)", "GRAFANA_PORT", "3000", "Grafana."),
    (
        "Ports (published on 127.0.0.1 only)",
        "STORE_DASHBOARD_PORT",
        "4747",
        "The Agent Lightning store's dashboard, read-only (its write API stays internal).",
    ),
    ("Telemetry", "PROMETHEUS_RETENTION", "15d", "How long Prometheus keeps metrics."),
    (
        "Telemetry",
        "OTEL_SERVICE_NAME",
        "apo-trainer",
        "service.name of the spans of train and runner. The OpenTelemetry SDK reads it (and its other OTEL_* "
        "variables) from the environment, so outside compose it is not read from .env.",
    ),
    ("Memory limits", "TRAIN_MEMORY_LIMIT", "3g", "train (with its RUNNERS runner processes)."),
    ("Memory limits", "RUNNER_MEMORY_LIMIT", "2g", "Each runner (profile `runners`)."),
    ("Memory limits", "LLM_MEMORY_LIMIT", "1g", "llm (the embedded model)."),
    ("Memory limits", "STORE_MEMORY_LIMIT", "1g", "store (in memory: grows with the spans of a run)."),
    ("Memory limits", "COLLECTOR_MEMORY_LIMIT", "512m", "collector (refuses data at 80% of it)."),
    ("Memory limits", "JAEGER_MEMORY_LIMIT", "1g", "jaeger."),
    ("Memory limits", "PROMETHEUS_MEMORY_LIMIT", "1g", "prometheus."),
    ("Memory limits", "GRAFANA_MEMORY_LIMIT", "512m", "grafana."),
    ("Memory limits", "STORE_DASHBOARD_MEMORY_LIMIT", "256m", "store-dashboard (the read-only proxy)."),
)


def render() -> str:
    lines = [HEADER]
    for name, field in Settings.model_fields.items():
        if name in SECTIONS:
            lines.append(f"\n# --- {SECTIONS[name]} ---")
        default = field.default
        if default is PydanticUndefined or default is None:
            shown = ""
        elif name == "embedded_llm_threads":
            shown = ""  # defaults to the machine's CPU count
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = str(default)
        flag = f" [{cli_flag(name)}]" if cli_flag(name) else ""
        description = field.description or ""
        if name == "embedded_llm_threads":
            description += " Default: the number of CPUs."
        lines.append(f"# {description}{flag}")
        if "\n" in shown:
            shown = shown.replace("\n", " ")
        value = f'"{shown}"' if " " in shown else shown
        lines.append(f"# {env_var(name)}={value}")
    lines.append(COMPOSE_HEADER)
    section = ""
    for var_section, var, default, description in COMPOSE_VARS:
        if var_section != section:
            section = var_section
            lines.append(f"\n# --- Compose: {section} ---")
        lines.append(f"# {description}")
        lines.append(f"# {var}={default}")
    return "\n".join(lines) + "\n"


# --- compose.yaml's variables ----------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATOR = re.compile(r":?[-?+]")


def _expand(text: str, i: int, found: list[tuple[str, str | None]], nested: bool) -> tuple[str, int]:
    """Compose's interpolation of text[i:] (up to the `}` closing a ${...} when nested), each variable
    resolved to its default; appends (name, default or None) of every variable met, nested ones too."""
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "}" and nested:
            return "".join(out), i + 1
        if char != "$":
            out.append(char)
            i += 1
        elif text.startswith("$$", i):  # a literal $
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            name = _NAME.match(text, i + 2)
            if name is None:
                raise ValueError(f"compose.yaml: bad interpolation in {text!r}")
            i = name.end()
            operator = _OPERATOR.match(text, i)
            default: str | None = None
            if text.startswith("}", i):
                i += 1
            elif operator is not None:
                inner, i = _expand(text, operator.end(), found, nested=True)
                if operator.group().endswith("-"):
                    default = inner
            else:
                raise ValueError(f"compose.yaml: bad interpolation in {text!r}")
            found.append((name.group(), default))
            out.append(default or "")
        elif (name := _NAME.match(text, i + 1)) is not None:  # $NAME
            found.append((name.group(), None))
            out.append("")
            i = name.end()
        else:
            out.append(char)
            i += 1
    if nested:
        raise ValueError(f"compose.yaml: unclosed ${{ in {text!r}")
    return "".join(out), i


def compose_variables(node: Any) -> list[tuple[str, str | None]]:
    """(name, default) of every variable interpolated in compose.yaml's values (comments and keys excluded)."""
    found: list[tuple[str, str | None]] = []
    if isinstance(node, dict):
        for value in node.values():
            found += compose_variables(value)
    elif isinstance(node, list):
        for item in node:
            found += compose_variables(item)
    elif isinstance(node, str):
        _expand(node, 0, found, nested=False)
    return found


def compose_drift() -> list[str]:
    """What compose.yaml and the Compose section disagree on (empty: nothing)."""
    settings = {env_var(name) for name in Settings.model_fields}
    documented = {var: default for _, var, default, _ in COMPOSE_VARS}
    used = compose_variables(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))
    problems: list[str] = []
    for var, default in sorted(set(used)):
        if var in settings:
            continue
        if var not in documented:
            problems.append(
                f"compose.yaml uses ${{{var}}}, which is neither a trainer setting (trainer/config.py) "
                "nor listed in COMPOSE_VARS (scripts/env_example.py)"
            )
        elif default is not None and default != documented[var]:
            problems.append(
                f"compose.yaml's default of {var} is {default!r}, COMPOSE_VARS (scripts/env_example.py) "
                f"says {documented[var]!r}"
            )
    used_names = {var for var, _ in used}
    for var in documented:
        if var in settings:
            problems.append(f"{var} is a trainer setting: remove it from COMPOSE_VARS (scripts/env_example.py)")
        elif var not in used_names:
            problems.append(f"COMPOSE_VARS (scripts/env_example.py) lists {var}, which compose.yaml does not use")
    return problems


def main() -> int:
    text = render()
    problems = compose_drift()
    for problem in problems:
        print(problem, file=sys.stderr)
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python scripts/env_example.py", file=sys.stderr)
            return 1
        return 1 if problems else 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
