"""Prometheus metrics of a training, served by the trainer's main process.

Rollouts run in separate runner processes, so per-rollout figures are not counted where they
happen: every runner appends one line per rollout to the run's ledger (``rollouts.jsonl``), and the
main process follows that file (:class:`trainer.records.ledger.LedgerFollower`) and observes each
line exactly once (:meth:`TrainerMetrics.observe_rollout`). That keeps one registry in
one process (no multiprocess mode, whose files and merge rules would forbid exemplars), and the
reward histogram carries each rollout's trace id as an exemplar (OpenMetrics), linking a reward
to its trace in Jaeger.

Names follow Prometheus conventions (base units, ``_total`` counters). Labels are bounded: split,
outcome, role, model, the prompt version (a run evaluates tens of versions, never thousands) and what
a version changed (one value per version); no rollout ids or prompt text. See README "Metrics" for
the list.

A one-shot trainer must not exit before Prometheus has read its final values: if anything scraped
during the run, ``wait_for_final_scrape`` waits (bounded) for one scrape after the last update.

``/metrics`` is served one thread per connection, and a connection that sends nothing for
``idle_timeout`` seconds is closed: a stuck or slow client (a port scanner, a half-open
connection) never makes Prometheus's scrape wait behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from trainer.agent.prompt import Change
from trainer.telemetry import metric_contract as contract

logger = logging.getLogger(__name__)

# Declared in the contract; the names stay importable from here.
OUTCOMES = contract.ROLLOUT_OUTCOME.values
REWARD_BUCKETS = contract.REWARD_BUCKETS
DURATION_BUCKETS = contract.DURATION_BUCKETS
# Seconds a /metrics connection may sit without sending; Prometheus sends its request at once.
IDLE_TIMEOUT = 10.0
# Rollouts of these splits get zero series from the start: rate() and "no errors" panels need a
# series before the first error. Test rollouts only run at the end of a run.
ZERO_SERIES_SPLITS = ("train", "val")


class TrainerMetrics:
    """Every metric of a training, on its own registry (tests make as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reward = contract.ROLLOUT_REWARD.register(r)
        self.rollouts = contract.ROLLOUTS.register(r)
        self.rollout_duration = contract.ROLLOUT_DURATION.register(r)
        self.cache_hits = contract.ROLLOUT_CACHE_HITS.register(r)
        self.tokens = contract.LLM_TOKENS.register(r)
        self.llm_duration = contract.LLM_REQUEST_DURATION.register(r)
        self.round = contract.ROUND_NUMBER.register(r)
        self.rounds_planned = contract.ROUNDS_PLANNED.register(r)
        self.candidate_score = contract.CANDIDATE_VAL_SCORE.register(r)
        self.seed_score = contract.SEED_VAL_SCORE.register(r)
        self.best_score = contract.BEST_VAL_SCORE.register(r)
        self.best_prompt = contract.BEST_PROMPT_INFO.register(r)
        self.candidates = contract.CANDIDATES.register(r)
        self.candidates_proposed = contract.CANDIDATES_PROPOSED.register(r)
        self.failed_branches = contract.OPTIMIZER_FAILED_BRANCHES.register(r)
        self.test_score = contract.TEST_SCORE.register(r)
        self.run_info = contract.RUN_INFO.register(r)
        for outcome in OUTCOMES:
            for split in ZERO_SERIES_SPLITS:
                self.rollouts.labels(split=split, outcome=outcome)
        for split in ZERO_SERIES_SPLITS:
            self.cache_hits.labels(split=split)
        for outcome in contract.CANDIDATE_OUTCOME.values:
            self.candidates.labels(outcome=outcome)
        # Every kind from the start: "no examples candidates yet" reads 0, and a run without
        # demonstrations still shows that nothing but the instruction was tried.
        for change in contract.CANDIDATE_CHANGE.values:
            self.candidates_proposed.labels(change=change)
        self._lock = threading.Lock()
        self._best_label: str | None = None

    # --- per rollout (from the ledger) -------------------------------------------------------------
    def observe_rollout(self, row: dict[str, Any], agent_model: str) -> None:
        split = str(row.get("mode") or "test")
        version = str(row.get("prompt_version") or "unknown")
        reward = float(row.get("reward") or 0.0)
        trace_id, span_id = row.get("trace_id"), row.get("span_id")
        exemplar = {"trace_id": str(trace_id)} if trace_id else None
        if exemplar is not None and span_id:
            exemplar["span_id"] = str(span_id)
        self.reward.labels(split=split, prompt_version=version).observe(reward, exemplar)
        self.rollouts.labels(split=split, outcome=str(row.get("status") or "ok")).inc()
        self.rollout_duration.labels(split=split).observe(float(row.get("wall_seconds") or 0.0))
        if row.get("cache_hit"):  # no model call: nothing for the LLM request metrics
            self.cache_hits.labels(split=split).inc()
            return
        self.observe_llm("agent", agent_model, int(row.get("input_tokens") or 0), int(row.get("output_tokens") or 0),
                         float(row.get("llm_seconds") or 0.0))  # fmt: skip

    def observe_llm(self, role: str, model: str, input_tokens: int, output_tokens: int, seconds: float) -> None:
        self.tokens.labels(role=role, model=model, kind="input").inc(input_tokens)
        self.tokens.labels(role=role, model=model, kind="output").inc(output_tokens)
        self.llm_duration.labels(role=role, model=model).observe(seconds)

    # --- APO progress ------------------------------------------------------------------------------
    def set_round(self, number: int) -> None:
        self.round.set(number)

    def candidate_proposed(self, change: Change) -> None:
        """APO proposed a candidate (not the seed); ``change`` is what it changed against its parent."""
        self.candidates_proposed.labels(change=change).inc()

    def candidate_scored(self, label: str, round_number: int, score: float, *, candidate: bool, change: Change) -> None:
        self.candidate_score.labels(prompt_version=label, round=str(round_number), change=change).set(score)
        if candidate:
            self.candidates.labels(outcome="evaluated").inc()

    def candidate_rejected(self, label: str, round_number: int, *, change: Change) -> None:
        self.candidate_score.labels(prompt_version=label, round=str(round_number), change=change).set(0.0)
        self.candidates.labels(outcome="rejected").inc()

    def set_best(self, label: str, score: float) -> None:
        with self._lock:
            if self._best_label is not None and self._best_label != label:
                self.best_prompt.remove(self._best_label)
            self._best_label = label
        self.best_prompt.labels(prompt_version=label).set(1)
        self.best_score.set(score)


class _QuietHandler(WSGIRequestHandler):
    # Socket timeout of every read and write (StreamRequestHandler.setup): an idle connection is
    # closed instead of holding its thread. MetricsServer sets its own.
    timeout = IDLE_TIMEOUT

    def handle(self) -> None:
        # wsgiref reads the request line without BaseHTTPRequestHandler's timeout handling: a
        # timed-out or reset client would print a traceback to stderr for every stuck connection.
        try:
            super().handle()
        except (TimeoutError, ConnectionError) as exc:
            logger.debug("metrics: dropped %s: %s", self.address_string(), exc)

    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One daemon thread per connection: a stuck client holds only its own thread, never the next
    scrape, and never keeps the process alive at exit."""

    daemon_threads = True


class MetricsServer:
    """Serves /metrics and remembers when it was scraped."""

    def __init__(self, metrics: TrainerMetrics, host: str, port: int, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.metrics = metrics
        self.scrapes: list[float] = []
        app = make_wsgi_app(metrics.registry)

        scrape_lock = threading.Lock()

        def tracked(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            with scrape_lock:  # scrapes run in parallel now; the list stays in time order
                self.scrapes.append(time.time())
            return app(environ, start_response)  # type: ignore[no-any-return]

        class Handler(_QuietHandler):
            timeout = idle_timeout

        self._server: WSGIServer = make_server(
            host, port, tracked, server_class=_ThreadingWSGIServer, handler_class=Handler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        logger.info("metrics at http://%s:%d/metrics", self._server.server_name, self.port)
        return self

    def wait_for_final_scrape(self, timeout: float) -> bool:
        """If a scraper has been reading us, wait for a read that starts after this call.

        Call it once every value is final: then that read has them all. (Tracking the time of the
        last update instead misses values set straight on a metric, such as the test scores.)
        """
        if not self.scrapes:
            return False
        deadline = time.time() + timeout
        target = time.time()
        while time.time() < deadline:
            if self.scrapes and self.scrapes[-1] > target:
                return True
            time.sleep(0.2)
        logger.warning("no scrape within %.0fs after the final update; the last values may be missing", timeout)
        return False

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
