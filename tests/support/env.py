"""The environment a process under test starts with: nothing of the developer's configuration.

Derived from the settings' fields, not from name prefixes: every trainer setting (RUNNERS,
ITERATIONS, DATASET_PATH, ...), every OpenTelemetry SDK variable and Agent Lightning's role are
removed, so a shell's exports can never change what a test runs.
"""

from __future__ import annotations

import os

from trainer.config import Settings

SETTINGS_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)
# Read by libraries, not by our settings: each would point a child process somewhere else.
LIBRARY_VARIABLES = frozenset({"AGL_CURRENT_ROLE", "AGL_MANAGED_STORE", "AGL_SERVER_HOST", "AGL_SERVER_PORT"})
# Offline and quiet: litellm would fetch its cost map from the internet, agno would phone home.
OFFLINE = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "AGNO_TELEMETRY": "false", "PYTHONUNBUFFERED": "1"}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any trainer, OpenTelemetry or Agent Lightning setting,
    plus the offline defaults and ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in SETTINGS_VARIABLES
        and key.upper() not in LIBRARY_VARIABLES
        and not key.upper().startswith("OTEL_")
    }
    return {**env, **OFFLINE, **extra}


def trainer_env(**extra: str) -> dict[str, str]:
    """:func:`clean_env` for a trainer process: ports it binds chosen freely, unless ``extra`` says."""
    return clean_env(**{"STORE_PORT": "0", "METRICS_PORT": "0", **extra})
