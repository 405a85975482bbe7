"""Writes Grafana's dashboards (``grafana/dashboards/*.json``) and the README's metric table.

The JSON files stay committed because Grafana's file provisioning and the tests read them; the
sources are ``grafana/dashboards_src/`` (built with grafana-foundation-sdk) and the trainer's metric
contract (``trainer/telemetry/metric_contract.py``). ``--check`` (run by ``make lint``) writes
nothing and fails, naming the file, when a committed file is not exactly what this script writes.

    .venv/bin/python grafana/generate.py          # write what changed
    .venv/bin/python grafana/generate.py --check  # exit 1 if anything is stale
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

# This checkout's contract, even when the virtualenv's editable install points at another checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboards_src import DASHBOARDS, readme_table
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from trainer.telemetry.metric_contract import METRICS

GRAFANA = Path(__file__).resolve().parent
REPO = GRAFANA.parent
DASHBOARD_DIR = GRAFANA / "dashboards"
README = REPO / "README.md"
DIFF_LINES = 40  # enough to see what changed, short enough for a CI log


def render(board: Dashboard) -> str:
    """Stable JSON: sorted keys, fixed indent, a final newline (the output must not depend on run or dict order)."""
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected() -> dict[Path, str]:
    """Every file this script owns, with the content it must have."""
    files = {DASHBOARD_DIR / name: render(build()) for name, build in sorted(DASHBOARDS.items())}
    files[README] = readme_table.replace(README.read_text(encoding="utf-8"), readme_table.render(METRICS))
    return files


def _current(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def _diff(path: Path, current: str | None, wanted: str) -> str:
    lines = difflib.unified_diff(
        (current or "").splitlines(keepends=True),
        wanted.splitlines(keepends=True),
        fromfile=f"{path.relative_to(REPO)} (committed)",
        tofile=f"{path.relative_to(REPO)} (generated)",
    )
    shown = list(lines)
    more = f"... {len(shown) - DIFF_LINES} more diff lines\n" if len(shown) > DIFF_LINES else ""
    return "".join(shown[:DIFF_LINES]) + more


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is not up to date")
    args = parser.parse_args(argv)
    try:
        files = expected()
    except readme_table.MarkersMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = {path: text for path, text in files.items() if _current(path) != text}
    for path, text in stale.items():
        name = path.relative_to(REPO)
        if args.check:
            print(f"{name} differs from the generator's output:", file=sys.stderr)
            print(_diff(path, _current(path), text), file=sys.stderr)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {name}")
    if args.check and stale:
        print("Run `.venv/bin/python grafana/generate.py` and commit the result.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
