"""Names of prompt resources in the store: one per run and prompt version.

APO names its prompt resources by version label ("v0", "v1", ...) and the store overwrites by
name, so two trainings sharing one store would evaluate each other's "v3". The run id goes into
the name; ledgers, progress and the prompt DB keep the bare label.
"""

from __future__ import annotations

# Not "/": the store's REST API puts the id in the URL path.
_SEPARATOR = "~"


def resources_id(run_id: str, label: str) -> str:
    return f"{run_id}{_SEPARATOR}{label}"


def label_of(resources_id: str | None) -> str | None:
    """The prompt version label a resources id names (an id without a run part is a label)."""
    if resources_id is None:
        return None
    return resources_id.rsplit(_SEPARATOR, 1)[-1]
