"""All trainer settings, declared once.

Every setting is a field of :class:`Settings`. Its environment variable is the field name in upper
case (``agent_model`` -> ``AGENT_MODEL``); CLI flags override the environment, which overrides the
defaults below. ``.env.example`` mirrors this file: keep the two in step (a test checks it).

No LLM endpoint configured (``OPENAI_BASE_URL`` unset) means "start the embedded SmolLM2-135M
server on loopback", so a fresh checkout trains with no key and no network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trainer.urls import URL_EXAMPLES, http_url_problem, url_origin

EMBEDDED_MODEL_NAME = "smollm2-135m"


# A hosted endpoint's rate limits are unknown: a few concurrent requests are safe everywhere.
REMOTE_EVAL_CONCURRENCY = 4


class ConfigError(ValueError):
    """A setting is invalid; the message names the setting, its variable and its flag."""


class Settings(BaseSettings):
    """Typed settings read from the environment (and ``.env``), overridable by CLI flags."""

    # allow_inf_nan=False: pydantic reads "inf" and "nan" as floats, and a timeout of inf waits forever
    # (nan compares false with everything, so a limit of nan is never reached): every float is finite.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_default=True, allow_inf_nan=False
    )

    # --- Language model used by the agent's rollouts -------------------------------------------
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint (…/v1) for rollouts; unset = embedded model."
    )
    openai_api_key: SecretStr | None = Field(None, description="API key for OPENAI_BASE_URL.")
    agent_model: str = Field(EMBEDDED_MODEL_NAME, description="Model name the agent calls.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Agent sampling temperature.")
    max_reply_tokens: int = Field(256, ge=1, le=32768, description="Agent reply length cap (tokens).")
    llm_timeout: float = Field(60.0, gt=0, description="Seconds one agent LLM request may take.")
    llm_max_retries: int = Field(1, ge=0, le=10, description="Retries of a failed agent LLM request.")
    use_calculator: bool = Field(False, description="Give the agent a calculator tool (needs tool calls).")
    rollout_cache: bool = Field(
        True,
        description="At TEMPERATURE 0, one agent call per (prompt, task) pair per output dir: later rollouts of "
        "the pair reuse its outcome (OUTPUT_DIR/rollout_cache.db). Off above temperature 0 (outcomes are samples).",
    )

    # --- Optimizer (APO's critique = "gradient" and edit calls) ---------------------------------
    optimizer_base_url: str | None = Field(
        None, description="Endpoint for APO's gradient/edit calls; unset = same as the agent's."
    )
    optimizer_api_key: SecretStr | None = Field(
        None,
        description="Key for OPTIMIZER_BASE_URL; unset = OPENAI_API_KEY, only if OPTIMIZER_BASE_URL is unset or "
        "on OPENAI_BASE_URL's scheme, host and port (a key never goes to another server).",
    )
    gradient_model: str | None = Field(None, description="Model for critiques; unset = AGENT_MODEL.")
    edit_model: str | None = Field(None, description="Model for prompt edits; unset = GRADIENT_MODEL.")
    optimizer_temperature: float = Field(1.0, ge=0.0, le=2.0, description="Diversity of APO's edits.")
    optimizer_max_tokens: int = Field(
        512, ge=16, le=32768, description="Reply cap of each gradient/edit call (stock APO has none)."
    )
    optimizer_timeout: float = Field(180.0, gt=0, description="Seconds one gradient/edit call may take.")
    optimizer_max_retries: int = Field(2, ge=0, le=10, description="Retries of transient optimizer errors.")

    # --- APO ---------------------------------------------------------------------------------
    algorithm: Literal["apo", "baseline"] = Field(
        "apo", description="apo, or baseline (seed only).", json_schema_extra={"flag": "--algorithm"}
    )
    iterations: int = Field(
        2, ge=1, le=100, description="APO beam-search rounds.", json_schema_extra={"flag": "--iterations"}
    )
    beam_width: int = Field(
        2, ge=1, le=32, description="Prompts kept in the beam.", json_schema_extra={"flag": "--beam-width"}
    )
    branch_factor: int = Field(
        2, ge=1, le=32, description="Candidates edited from each parent.", json_schema_extra={"flag": "--branch-factor"}
    )
    gradient_batch_size: int = Field(
        4, ge=1, le=256, description="Train rollouts per critique.", json_schema_extra={"flag": "--gradient-batch-size"}
    )
    val_batch_size: int = Field(
        16,
        ge=1,
        le=10000,
        description="Val tasks scoring each candidate.",
        json_schema_extra={"flag": "--val-batch-size"},
    )
    demos: int = Field(
        3,
        ge=0,
        le=16,
        description="Worked examples (demonstrations) in each prompt, chosen beside APO's instruction edits from "
        "no more rollouts than plain APO; 0 = plain APO (instruction edits only).",
        json_schema_extra={"flag": "--demos"},
    )
    demo_source: Literal["both", "bootstrapped", "gold"] = Field(
        "both",
        description="Where demonstrations come from: bootstrapped (train rollouts that earned reward 1, read back "
        "from their spans), gold (the data set's worked solutions), or both. Never val or test problems.",
        json_schema_extra={"flag": "--demo-source"},
    )
    instruction_edits: bool = Field(
        True,
        description="false: no optimizer edits, every branch draws or combines examples (needs DEMOS > 0; the "
        "demonstrations-only arm of `make bench-demos`).",
    )
    candidate_cut: bool = Field(
        True,
        description="Stop a new candidate's val batch once no outcome of its remaining rollouts could put it "
        "into the beam (the queued ones are cancelled; the beam is the same as without the cut).",
        json_schema_extra={"flag": "--candidate-cut"},
    )
    rollout_batch_timeout: float = Field(900.0, gt=0, description="Seconds to wait for one batch.")
    max_endpoint_failures: int = Field(
        8, ge=1, le=1000, description="Consecutive rollouts failed at the agent's endpoint that stop the run."
    )
    seed_prompt: str | None = Field(
        None, min_length=1, description="The prompt APO starts from; unset = the task's own seed prompt."
    )
    seed_prompt_file: Path | None = Field(
        None, description="File holding the seed prompt (wins).", json_schema_extra={"flag": "--seed-prompt-file"}
    )

    # --- Candidate guard ----------------------------------------------------------------------
    candidate_guard: bool = Field(True, description="Reject empty/duplicate/oversized candidates.")
    max_prompt_chars: int = Field(4000, ge=50, description="Longest candidate prompt accepted.")
    max_prompt_growth: float = Field(4.0, ge=1.0, description="Longest candidate as a multiple of its parent.")

    # --- Data --------------------------------------------------------------------------------
    task: str = Field(
        "math",
        description="What the agent is trained on: math (the built-in word problems) or package.module:NAME "
        "of your own trainer.task.Task object.",
        json_schema_extra={"flag": "--task"},
    )
    dataset_path: Path | None = Field(
        None, description="JSONL of {question, answer}; unset = generated.", json_schema_extra={"flag": "--dataset"}
    )
    train_size: int = Field(
        40, ge=1, description="Train split size (critique rollouts).", json_schema_extra={"flag": "--train-size"}
    )
    val_size: int = Field(
        16, ge=1, description="Val split size (scores prompts).", json_schema_extra={"flag": "--val-size"}
    )
    test_size: int = Field(
        30, ge=1, description="Held-out test split size (final report).", json_schema_extra={"flag": "--test-size"}
    )
    seed: int = Field(
        7, description="Seed of data generation, splits and APO sampling.", json_schema_extra={"flag": "--seed"}
    )

    # --- Execution ---------------------------------------------------------------------------
    output_dir: Path = Field(
        Path("outputs"), description="Prompt DB, best prompt, summary, plots.", json_schema_extra={"flag": "--output"}
    )
    runners: int = Field(
        2,
        ge=0,
        le=64,
        description="Rollout runner processes. For a training, 0 leaves every rollout to "
        "`apo-trainer runner` processes working against the same STORE_URL.",
        json_schema_extra={"flag": "--runners"},
    )
    store_url: str | None = Field(
        None,
        description="External Agent Lightning store; unset = in-process.",
        json_schema_extra={"flag": "--store-url"},
    )
    store_port: int = Field(4747, ge=0, le=65535, description="Port of the in-process store (0 = free).")
    store_span_bytes: int | None = Field(
        None,
        ge=1_000_000,
        description="Spans the store server (`apo-trainer store`, compose's `store`) keeps, in bytes as the store "
        "estimates them, before it drops those of its oldest rollouts; unset = 30% of its memory limit (cgroup, "
        "else the host's).",
        json_schema_extra={"flag": "--span-bytes"},
    )
    resume: bool = Field(
        False, description="Start from the best prompt saved in OUTPUT_DIR.", json_schema_extra={"flag": "--resume"}
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level.", json_schema_extra={"flag": "--log-level"}
    )

    tracing: Literal["auto", "off"] = Field(
        "auto",
        description="auto: spans via the collector if OTEL_EXPORTER_OTLP_ENDPOINT is set, else straight into "
        "the store; off: no spans (for overhead benchmarks: APO then critiques without conversations).",
    )

    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        description="OpenTelemetry Collector's OTLP/HTTP endpoint (e.g. http://collector:4318): runners export "
        "their spans to it; unset = straight into the store. The OpenTelemetry SDK reads the other OTEL_* "
        "variables (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_HEADERS, ...) itself.",
    )

    # --- Evaluation ----------------------------------------------------------------------------
    eval_concurrency: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Concurrent rollouts of the test split and of `eval`; unset = the embedded model's slots "
        "(EMBEDDED_LLM_PARALLEL), or 4 with OPENAI_BASE_URL.",
    )

    # --- Metrics -----------------------------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="Interface of the Prometheus /metrics endpoint.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Port of /metrics (0 = no metrics endpoint).")
    metrics_final_scrape_timeout: float = Field(
        30.0, gt=0, description="Seconds to wait at exit for Prometheus to read the final values."
    )
    otel_metric_export_interval: int = Field(
        5000,
        ge=100,
        le=3_600_000,
        description="Milliseconds between pushes of the training's metrics to the collector at "
        "OTEL_EXPORTER_OTLP_ENDPOINT (the OpenTelemetry SDK's variable and unit; its own default, 60000, is "
        "slower than the 5 s scrape). The final values are pushed at exit as well.",
    )

    # --- Embedded model server -----------------------------------------------------------------
    embedded_llm_host: str = Field(
        "127.0.0.1", description="Interface the embedded model binds.", json_schema_extra={"flag": "--llm-host"}
    )
    embedded_llm_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the embedded model (0 = free).",
        json_schema_extra={"flag": "--llm-port"},
    )
    embedded_llm_parallel: int = Field(
        4, ge=1, le=64, description="Concurrent requests it serves.", json_schema_extra={"flag": "--llm-parallel"}
    )
    embedded_llm_ctx: int = Field(
        8192,
        ge=512,
        description="Context window (tokens) shared by all slots.",
        json_schema_extra={"flag": "--llm-ctx"},
    )
    embedded_llm_threads: int = Field(
        max(1, os.cpu_count() or 1),
        ge=1,
        description="CPU threads of the embedded model.",
        json_schema_extra={"flag": "--llm-threads"},
    )
    embedded_llm_cache_ram: int = Field(
        256,
        ge=0,
        description="MiB of host memory for llama.cpp's prompt cache (0 = off). llama.cpp's own "
        "default, 8192, grows past a container's memory limit.",
        json_schema_extra={"flag": "--llm-cache-ram"},
    )
    embedded_llm_cache_prompt: bool = Field(
        True,
        description="Reuse a slot's cached prompt prefix (faster). Off, with EMBEDDED_LLM_PARALLEL=1, the "
        "embedded model is repeatable: the same request gets the same reply (slots batched together, or a "
        "prefix computed in another batch, change the arithmetic).",
        json_schema_extra={"flag": "--llm-cache-prompt"},
    )

    @field_validator("openai_base_url", "optimizer_base_url", "store_url", "otel_exporter_otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip().rstrip("/")
        problem = http_url_problem(value)
        if problem is not None:
            # The message is all the user sees: say what a good value looks like for this setting.
            example = URL_EXAMPLES.get(info.field_name or "", "http://host:port")
            raise ValueError(f"{problem}: give an http:// or https:// URL with a host, e.g. {example}")
        scheme = urlsplit(value).scheme
        return scheme.lower() + value[len(scheme) :]  # HTTP://x is http://x

    # --- Derived values --------------------------------------------------------------------------
    @property
    def uses_embedded_llm(self) -> bool:
        return self.openai_base_url is None

    @property
    def uses_rollout_cache(self) -> bool:
        return self.rollout_cache and self.temperature == 0

    @property
    def prompt_db_path(self) -> Path:
        return self.output_dir / "prompts.db"

    @property
    def effective_eval_concurrency(self) -> int:
        if self.eval_concurrency is not None:
            return self.eval_concurrency
        return self.embedded_llm_parallel if self.uses_embedded_llm else REMOTE_EVAL_CONCURRENCY

    @property
    def effective_gradient_model(self) -> str:
        return self.gradient_model or self.agent_model

    @property
    def effective_edit_model(self) -> str:
        return self.edit_model or self.effective_gradient_model

    @property
    def effective_optimizer_key(self) -> SecretStr | None:
        """OPTIMIZER_API_KEY, else OPENAI_API_KEY if the optimizer is on its server (the embedded one if unset)."""
        other = self.optimizer_base_url and url_origin(self.optimizer_base_url) != url_origin(self.openai_base_url)
        return self.optimizer_api_key or (None if other else self.openai_api_key)

    def check_training_batches(self) -> None:
        """APO's batches must fit in their splits; only a training needs this."""
        if self.algorithm != "apo":
            return
        if self.val_batch_size > self.val_size:
            raise ConfigError(
                f"VAL_BATCH_SIZE (--val-batch-size) {self.val_batch_size} is larger than VAL_SIZE (--val-size) "
                f"{self.val_size}: lower the batch or raise the split"
            )
        if self.gradient_batch_size > self.train_size:
            raise ConfigError(
                f"GRADIENT_BATCH_SIZE (--gradient-batch-size) {self.gradient_batch_size} is larger than "
                f"TRAIN_SIZE (--train-size) {self.train_size}: lower the batch or raise the split"
            )

    def check_search(self) -> None:
        """A search must have something to change; only a training needs this."""
        if not self.instruction_edits and self.demos == 0 and self.algorithm == "apo":
            raise ConfigError(
                "INSTRUCTION_EDITS false with DEMOS (--demos) 0 leaves APO nothing to change: "
                "set DEMOS to 1 or more, or INSTRUCTION_EDITS to true"
            )

    def check_execution(self) -> None:
        """Where a training's rollouts run; only a training needs this."""
        if self.runners == 0 and self.store_url is None:
            raise ConfigError(
                "RUNNERS (--runners) 0 leaves the rollouts to `apo-trainer runner` processes, which need a "
                "store they can reach: set STORE_URL (--store-url) too, or RUNNERS to 1 or more"
            )

    def load_seed_prompt(self, default: str) -> str:
        """The seed prompt text: SEED_PROMPT_FILE's, else SEED_PROMPT, else ``default`` (the task's)."""
        if self.seed_prompt_file is None:
            return self.seed_prompt or default
        try:
            text = self.seed_prompt_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"SEED_PROMPT_FILE: cannot read {self.seed_prompt_file}: {exc.strerror}") from exc
        if not text:
            raise ConfigError(f"SEED_PROMPT_FILE: {self.seed_prompt_file} is empty")
        return text

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to log or persist: secrets are never included."""
        data = self.model_dump(mode="json")
        for key in data:
            if is_secret(key):
                data[key] = "***" if data[key] else None
        return data


def env_var(field: str) -> str:
    return field.upper()


def cli_flag(field: str) -> str | None:
    """The command-line flag of a setting, declared on its field (``json_schema_extra={"flag": ...}``)."""
    extra = Settings.model_fields[field].json_schema_extra
    flag = extra.get("flag") if isinstance(extra, dict) else None
    return str(flag) if flag else None


def describe_setting(field: str) -> str:
    """``VAL_SIZE (--val-size)``, or just the variable when there is no flag."""
    flag = cli_flag(field)
    return f"{env_var(field)} ({flag})" if flag else env_var(field)


def is_secret(field: str) -> bool:
    """Secrets are recognised by their type (``SecretStr``), whatever the field is called."""
    annotation = Settings.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from env + overrides (CLI), turning validation errors into a ConfigError.

    The error names each failing setting by its variable and flag, so a user can fix it in
    whichever place they set it.
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            field = loc[0] if loc else ""
            where = describe_setting(field) if field and field in Settings.model_fields else "settings"
            given = err.get("input")
            secret = field in Settings.model_fields and is_secret(field)
            shown = "" if secret or isinstance(given, dict) or given is None else f" (got {given!r})"
            lines.append(f"{where}: {err['msg']}{shown}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None
