"""Tests for trainer.config: defaults, env and CLI precedence, error messages, secrets, .env.example."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.support import REPO
from trainer.agent.template import check_template
from trainer.config import EMBEDDED_MODEL_NAME, ConfigError, Settings, load_settings
from trainer.math_task import MATH

REPO_ROOT = REPO
SECRET = "sk-test-DO-NOT-LEAK-4f9c2e7a1b"
OTHER_SECRET = "sk-opt-ALSO-SECRET-77d1e0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the developer's shell or .env: only what each test sets."""
    fields = {name.upper() for name in Settings.model_fields}
    for name in list(os.environ):
        if name.upper() in fields:  # pydantic-settings matches names case-insensitively
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# -- defaults ------------------------------------------------------------------------------------


def test_defaults_are_valid() -> None:
    settings = load_settings()
    assert settings.uses_embedded_llm
    assert settings.agent_model == EMBEDDED_MODEL_NAME
    assert settings.effective_gradient_model == EMBEDDED_MODEL_NAME
    assert settings.effective_edit_model == EMBEDDED_MODEL_NAME
    assert settings.effective_optimizer_key is None
    assert settings.algorithm == "apo"
    settings.check_training_batches()  # the default plan fits its splits
    assert settings.output_dir == Path("outputs")
    assert settings.task == "math"
    assert settings.seed_prompt is None  # unset: the task's own seed prompt
    assert settings.load_seed_prompt(MATH.seed_prompt) == MATH.seed_prompt
    check_template(MATH.seed_prompt, MATH.template_fields)  # the default seed must be a usable template
    json.dumps(settings.public_dict())  # loggable as JSON


def test_every_field_is_described() -> None:
    undocumented = [name for name, f in Settings.model_fields.items() if not (f.description or "").strip()]
    assert undocumented == []


# -- precedence ----------------------------------------------------------------------------------


def test_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITERATIONS", "5")
    monkeypatch.setenv("OPENAI_BASE_URL", "  https://llm.example.com/v1/  ")
    monkeypatch.setenv("USE_CALCULATOR", "true")
    monkeypatch.setenv("ALGORITHM", "baseline")
    monkeypatch.setenv("DATASET_PATH", "data/problems.jsonl")
    monkeypatch.setenv("TEMPERATURE", "0.7")
    monkeypatch.setenv("GRADIENT_MODEL", "big-critic")
    settings = load_settings()
    assert settings.iterations == 5
    assert settings.openai_base_url == "https://llm.example.com/v1"  # trimmed, no trailing slash
    assert not settings.uses_embedded_llm
    assert settings.use_calculator is True
    assert settings.algorithm == "baseline"
    assert settings.dataset_path == Path("data/problems.jsonl")
    assert settings.temperature == pytest.approx(0.7)
    assert settings.effective_gradient_model == "big-critic"
    assert settings.effective_edit_model == "big-critic"  # EDIT_MODEL unset: follows GRADIENT_MODEL


def test_blank_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # docker compose passes `OPENAI_BASE_URL=` through as an empty string
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    monkeypatch.setenv("STORE_URL", "   ")
    settings = load_settings()
    assert settings.openai_base_url is None
    assert settings.store_url is None
    assert settings.uses_embedded_llm


def test_dotenv_file_in_cwd_is_read_and_env_beats_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ITERATIONS=3\nBEAM_WIDTH=5\n", encoding="utf-8")
    monkeypatch.setenv("BEAM_WIDTH", "6")
    settings = load_settings()
    assert settings.iterations == 3
    assert settings.beam_width == 6


def test_cli_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITERATIONS", "5")
    monkeypatch.setenv("VAL_SIZE", "20")
    settings = load_settings(iterations=7, val_size=None)
    assert settings.iterations == 7
    assert settings.val_size == 20  # a flag not given (None) leaves the env value


def test_cli_override_rescues_an_invalid_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITERATIONS", "zero")
    assert load_settings(iterations=4).iterations == 4


def test_optimizer_key_falls_back_to_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    settings = load_settings()
    assert settings.effective_optimizer_key is not None
    assert settings.effective_optimizer_key.get_secret_value() == SECRET
    monkeypatch.setenv("OPTIMIZER_API_KEY", OTHER_SECRET)
    settings = load_settings()
    assert settings.effective_optimizer_key is not None
    assert settings.effective_optimizer_key.get_secret_value() == OTHER_SECRET


# -- invalid values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "where"),
    [
        ("VAL_SIZE", "abc", "VAL_SIZE (--val-size)"),
        ("ITERATIONS", "0", "ITERATIONS (--iterations)"),
        ("ITERATIONS", "1.5", "ITERATIONS (--iterations)"),
        ("BEAM_WIDTH", "-1", "BEAM_WIDTH (--beam-width)"),
        ("RUNNERS", "", "RUNNERS (--runners)"),
        ("TEMPERATURE", "5", "TEMPERATURE"),
        ("LLM_TIMEOUT", "0", "LLM_TIMEOUT"),
        ("MAX_PROMPT_GROWTH", "0.5", "MAX_PROMPT_GROWTH"),
        ("ALGORITHM", "grpo", "ALGORITHM (--algorithm)"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL (--log-level)"),
        ("STORE_PORT", "70000", "STORE_PORT"),
    ],
)
def test_invalid_env_value_names_variable_and_flag(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, where: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert where in message
    if value:
        assert repr(value) in message  # shows what it got


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ({"iterations": -1}, "ITERATIONS (--iterations)"),
        ({"val_size": 0}, "VAL_SIZE (--val-size)"),
        ({"runners": 65}, "RUNNERS (--runners)"),
    ],
)
def test_invalid_flag_value_names_variable_and_flag(override: dict[str, int], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**override)
    assert where in str(info.value)
    assert repr(next(iter(override.values()))) in str(info.value)


def test_every_invalid_setting_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAL_SIZE", "abc")
    monkeypatch.setenv("ITERATIONS", "0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "VAL_SIZE (--val-size)" in str(info.value)
    assert "ITERATIONS (--iterations)" in str(info.value)


def test_config_error_is_a_value_error() -> None:
    # Callers that only know ValueError still catch it.
    with pytest.raises(ValueError):
        load_settings(iterations=0)


def test_val_batch_larger_than_val_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAL_SIZE", "4")
    settings = load_settings()  # fine for commands that do not train (eval, prompts, report)
    with pytest.raises(ConfigError) as info:
        settings.check_training_batches()
    message = str(info.value)
    for name in ("VAL_BATCH_SIZE", "--val-batch-size", "VAL_SIZE", "--val-size", "16", "4"):
        assert name in message


def test_gradient_batch_larger_than_train_split() -> None:
    settings = load_settings(train_size=2, gradient_batch_size=3)
    with pytest.raises(ConfigError) as info:
        settings.check_training_batches()
    message = str(info.value)
    for name in ("GRADIENT_BATCH_SIZE", "--gradient-batch-size", "TRAIN_SIZE", "--train-size", "3", "2"):
        assert name in message


def test_batch_sizes_equal_to_splits_are_fine() -> None:
    settings = load_settings(train_size=4, gradient_batch_size=4, val_size=5, val_batch_size=5)
    settings.check_training_batches()
    assert (settings.gradient_batch_size, settings.val_batch_size) == (4, 5)


def test_baseline_does_not_need_batches_to_fit() -> None:
    settings = load_settings(algorithm="baseline", val_size=2, train_size=1)
    settings.check_training_batches()
    assert settings.algorithm == "baseline"


@pytest.mark.parametrize("var", ["OPENAI_BASE_URL", "OPTIMIZER_BASE_URL", "STORE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"])
@pytest.mark.parametrize("url", ["ftp://llm.example.com/v1", "localhost:8080/v1", "127.0.0.1:4747", "collector:4318"])
def test_url_without_http_scheme_is_rejected(monkeypatch: pytest.MonkeyPatch, var: str, url: str) -> None:
    monkeypatch.setenv(var, url)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert var in message
    assert "http://" in message
    assert url in message


URL_VARS = ["OPENAI_BASE_URL", "OPTIMIZER_BASE_URL", "STORE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"]


@pytest.mark.parametrize("var", URL_VARS)
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        # Today's trap: no scheme, so the exporter drops every span and each rollout waits ~25 s.
        ("collector:4318", "has no scheme"),
        ("http:collector", "has no scheme"),
        ("ftp://collector:4318", "has the scheme ftp://"),
        ("http://:4318", "has no host"),
        ("http://", "has no scheme"),  # stripped of its slash: "http:"
        ("http://collector:99999", "has a bad port"),
        ("http://collector:43l8", "has a bad port"),
        ("http://collector :4318", "whitespace"),
        ("http://collector:4318/?debug=1", "query or fragment"),
        ("http://collector:4318#x", "query or fragment"),
    ],
)
def test_bad_urls_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, url: str, problem: str
) -> None:
    monkeypatch.setenv(var, url)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert re.search(rf"{var}( \(--[a-z-]+\))?: ", message), message
    assert problem in message
    assert "give an http:// or https:// URL with a host, e.g. http" in message


def test_the_otlp_endpoint_error_shows_a_collector_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    with pytest.raises(
        ConfigError, match=r"OTEL_EXPORTER_OTLP_ENDPOINT: .*has no scheme.*e\.g\. http://collector:4318"
    ):
        load_settings()


@pytest.mark.parametrize("var", URL_VARS)
def test_good_urls_are_kept_with_a_lower_case_scheme(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "HTTPS://User:pw@Collector.example:4318/otlp/")
    field = var.lower()
    assert getattr(load_settings(), field) == "https://User:pw@Collector.example:4318/otlp"
    monkeypatch.setenv(var, "http://[::1]:4318")
    assert getattr(load_settings(), field) == "http://[::1]:4318"


FLOAT_SETTINGS = sorted(
    name for name, info in Settings.model_fields.items() if info.annotation in (float, float | None)
)
DURATIONS = sorted(name for name in FLOAT_SETTINGS if name.endswith("_timeout"))


def test_the_duration_settings_are_the_timeouts() -> None:
    assert DURATIONS == ["llm_timeout", "metrics_final_scrape_timeout", "optimizer_timeout", "rollout_batch_timeout"]


@pytest.mark.parametrize("field", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "NaN", "1e999"])
def test_no_float_setting_accepts_inf_or_nan(monkeypatch: pytest.MonkeyPatch, field: str, value: str) -> None:
    # A timeout of inf waits forever; nan compares false with everything, so no limit of nan is reached.
    monkeypatch.setenv(field.upper(), value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{field.upper()}" in str(info.value)
    assert "finite number" in str(info.value)
    with pytest.raises(ConfigError, match="finite number"):
        load_settings(**{field: float(value)})  # the same through a flag


@pytest.mark.parametrize("field", DURATIONS)
@pytest.mark.parametrize("value", ["0", "-1", "-0.5"])
def test_durations_must_be_positive(monkeypatch: pytest.MonkeyPatch, field: str, value: str) -> None:
    monkeypatch.setenv(field.upper(), value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{field.upper()}: Input should be greater than 0" in str(info.value)


@pytest.mark.parametrize("field", DURATIONS)
def test_durations_accept_finite_positive_values(monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    monkeypatch.setenv(field.upper(), "0.25")
    assert getattr(load_settings(), field) == 0.25


# -- secrets -----------------------------------------------------------------------------------


def test_public_dict_never_holds_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPTIMIZER_API_KEY", OTHER_SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://llm.example.com/v1")
    settings = load_settings()
    public = settings.public_dict()
    dumped = json.dumps(public)
    assert SECRET not in dumped
    assert OTHER_SECRET not in dumped
    assert public["openai_api_key"] == "***"
    assert public["optimizer_api_key"] == "***"
    assert public["openai_base_url"] == "https://llm.example.com/v1"
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_public_dict_shows_unset_keys_as_none() -> None:
    public = load_settings().public_dict()
    assert public["openai_api_key"] is None
    assert public["optimizer_api_key"] is None


def test_config_error_never_shows_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPTIMIZER_API_KEY", OTHER_SECRET)
    monkeypatch.setenv("VAL_SIZE", "abc")
    monkeypatch.setenv("OPENAI_BASE_URL", "ftp://x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert SECRET not in str(info.value)
    assert OTHER_SECRET not in str(info.value)
    # Nor does an error about several settings at once.
    monkeypatch.delenv("VAL_SIZE")
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(ConfigError) as info:
        load_settings(val_size=2).check_training_batches()
    assert "VAL_BATCH_SIZE" in str(info.value)
    assert SECRET not in str(info.value)
    assert OTHER_SECRET not in str(info.value)


def test_invalid_key_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(openai_api_key=["not", SECRET])
    message = str(info.value)
    assert "OPENAI_API_KEY" in message
    assert SECRET not in message


# -- seed prompt -------------------------------------------------------------------------------


def test_seed_prompt_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEED_PROMPT", "Answer: {question}")
    assert load_settings().load_seed_prompt(MATH.seed_prompt) == "Answer: {question}"


def test_seed_prompt_file_wins_and_is_stripped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "seed.txt"
    path.write_text("\n  Solve it step by step.\n\n", encoding="utf-8")
    monkeypatch.setenv("SEED_PROMPT", "from the environment")
    monkeypatch.setenv("SEED_PROMPT_FILE", str(path))
    assert load_settings().load_seed_prompt(MATH.seed_prompt) == "Solve it step by step."


def test_missing_seed_prompt_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "no-such-seed.txt"
    settings = load_settings(seed_prompt_file=path)
    with pytest.raises(ConfigError) as info:
        settings.load_seed_prompt(MATH.seed_prompt)
    assert "SEED_PROMPT_FILE" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_empty_seed_prompt_file_names_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty-seed.txt"
    path.write_text(content, encoding="utf-8")
    settings = load_settings(seed_prompt_file=path)
    with pytest.raises(ConfigError) as info:
        settings.load_seed_prompt(MATH.seed_prompt)
    assert str(path) in str(info.value)
    assert "empty" in str(info.value)


def test_seed_prompt_file_that_is_a_directory_names_it(tmp_path: Path) -> None:
    settings = load_settings(seed_prompt_file=tmp_path)
    with pytest.raises(ConfigError) as info:
        settings.load_seed_prompt(MATH.seed_prompt)
    assert str(tmp_path) in str(info.value)


def test_empty_seed_prompt_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEED_PROMPT", "")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "SEED_PROMPT" in str(info.value)


# -- .env.example ------------------------------------------------------------------------------


def test_env_example_documents_every_setting() -> None:
    example = REPO_ROOT / ".env.example"
    assert example.is_file(), f"{example} is missing: it must list every setting of trainer/config.py"
    text = example.read_text(encoding="utf-8")
    missing = [
        name.upper()
        for name in Settings.model_fields
        if not re.search(rf"^[ \t]*(?:#[ \t]*)?{re.escape(name.upper())}=", text, re.MULTILINE)
    ]
    assert missing == [], f".env.example lacks {missing} (a line `NAME=` or `# NAME=` each)"
