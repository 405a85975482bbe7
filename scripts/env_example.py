"""Write .env.example from trainer.config.Settings, so the two can never drift apart.

Usage: python scripts/env_example.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from trainer.config import Settings, cli_flag, env_var

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".env.example"

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
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python scripts/env_example.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
