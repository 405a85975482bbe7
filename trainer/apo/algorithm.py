"""Agent Lightning's APO, made durable, bounded and honest.

Stock APO keeps everything in memory, has no hooks, and dies on the first failed optimizer call.
``TrackedAPO`` overrides a few of its steps (never its search logic) to:

- record every prompt version it creates (template, parent, round) and every validation score in
  the prompt DB as it happens, and re-export the best prompt whenever the best changes, so a killed
  run loses nothing already scored;
- apply the candidate guard before any rollout is spent on a candidate (rejected candidates score
  0, never enter the beam, and the reason is stored);
- turn a failed critique or edit into the loss of that branch only;
- report progress (round, rollouts, best score) to whoever watches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import agentlightning as agl
from agentlightning.algorithm.apo.apo import APO, RolloutResultForAPO, VersionedPromptTemplate

from trainer.apo.guard import GuardLimits, rejection_reason
from trainer.apo.optimizer_llm import optimizer_role
from trainer.data.problems import MathTask
from trainer.records.prompt_db import PromptDB
from trainer.telemetry.metrics import TrainerMetrics
from trainer.telemetry.spans import ROLLOUT_SPAN_NAME

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """Shared, thread-safe view of the run for displays and the summary."""

    total_rounds: int = 0
    round: int = 0
    best_score: float | None = None
    best_label: str | None = None
    seed_score: float | None = None
    candidates: int = 0
    rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    failed_branches: int = 0
    round_seconds: dict[int, float] = field(default_factory=dict)
    rollouts_read: int = 0
    incomplete_reads: int = 0  # rollouts whose spans were not all in the store when APO read them
    lock: threading.Lock = field(default_factory=threading.Lock)


def _worth_critiquing(span: dict[str, Any]) -> bool:
    name = str(span.get("name", ""))
    return name == ROLLOUT_SPAN_NAME or name.startswith(("agentlightning.reward", "agentlightning.annotation"))


def spans_complete(spans: list[dict[str, Any]]) -> bool:
    """Does the store hold every span the rollout ended? Its root span says how many came before it."""
    root = next((s for s in spans if s.get("name") == ROLLOUT_SPAN_NAME), None)
    if root is None:
        return False
    children = (root.get("attributes") or {}).get("trainer.child_spans")
    if not isinstance(children, int):
        return True  # written by a runner that does not count; nothing to compare with
    own = [s for s in spans if not str(s.get("name", "")).startswith("agentlightning.")]
    return len(own) >= children + 1


def compact_span(span: dict[str, Any]) -> dict[str, Any]:
    """Name, attributes and status: ids, timings and resources mean nothing to a critique."""
    status = span.get("status") or {}
    return {"name": span.get("name"), "attributes": span.get("attributes") or {}, "status": status.get("status_code")}


class TrackedAPO(APO[MathTask]):
    """APO that persists, guards and survives; see the module docstring."""

    def __init__(
        self,
        client: Any,
        *,
        prompts: PromptDB,
        run_id: str,
        guard: GuardLimits | None,
        progress: Progress | None = None,
        on_best: Callable[[int], None] | None = None,
        metrics: TrainerMetrics | None = None,
        **apo_kwargs: Any,
    ) -> None:
        super().__init__(client, **apo_kwargs)
        self.prompts = prompts
        self.run_id = run_id
        self.guard = guard
        self.progress = progress or Progress()
        self.progress.total_rounds = self.beam_rounds
        self.on_best = on_best
        self.metrics = metrics
        if metrics is not None:
            metrics.rounds_planned.set(self.beam_rounds)
            metrics.set_round(0)
        self._ids: dict[str, int] = {}  # APO label ("v3") -> prompt DB id
        self._rejected: set[str] = set()
        self._scored: set[str] = set()
        self._templates: list[str] = []
        self._parent: VersionedPromptTemplate | None = None
        self._round = 0
        self._best_marked: str | None = None
        self._round_started = time.monotonic()

    # --- versions ----------------------------------------------------------------------------
    def _create_versioned_prompt(
        self, prompt_template: agl.PromptTemplate, *, score: float | None = None
    ) -> VersionedPromptTemplate:
        versioned = super()._create_versioned_prompt(prompt_template, score=score)
        template = prompt_template.template
        parent = self._parent
        parent_id = self._ids.get(parent.version) if parent is not None else None
        reason = None
        if parent is not None and self.guard is not None:
            reason = rejection_reason(
                template, parent=parent.prompt_template.template, seen=self._templates, limits=self.guard
            )
        prompt_id = self.prompts.add_prompt(
            self.run_id, versioned.version, template, parent_id=parent_id, round=self._round
        )
        self._ids[versioned.version] = prompt_id
        self._templates.append(template)
        if parent is not None:
            with self.progress.lock:
                self.progress.candidates += 1
        if reason is not None:
            self._reject(versioned.version, reason)
        return versioned

    def _reject(self, label: str, reason: str) -> None:
        self._rejected.add(label)
        self.prompts.reject(self._ids[label], reason)
        kind = reason.split(":")[0]
        with self.progress.lock:
            self.progress.rejected += 1
            self.progress.rejected_reasons[kind] = self.progress.rejected_reasons.get(kind, 0) + 1
        if self.metrics is not None:
            self.metrics.candidate_rejected(label, self._round)
        logger.info("candidate %s rejected before evaluation: %s", label, reason)

    # --- optimizer calls -----------------------------------------------------------------------
    async def compute_textual_gradient(
        self,
        current_prompt: VersionedPromptTemplate,
        rollout_results: list[RolloutResultForAPO],
        *,
        prefix: str | None = None,
    ) -> str | None:
        with optimizer_role("gradient"):
            return await super().compute_textual_gradient(current_prompt, rollout_results, prefix=prefix)

    async def textual_gradient_and_apply_edit(
        self,
        current_prompt: VersionedPromptTemplate,
        rollout: list[RolloutResultForAPO],
        *,
        prefix: str | None = None,
    ) -> str | None:
        self._parent = current_prompt
        try:
            # The critique call is tagged inside compute_textual_gradient; what remains is the edit.
            with optimizer_role("edit"):
                new_prompt = await super().textual_gradient_and_apply_edit(current_prompt, rollout, prefix=prefix)
        except Exception as exc:
            # One failed critique/edit (context overflow, endpoint down after retries) costs this
            # branch, not the run: APO skips a branch whose edit is empty.
            with self.progress.lock:
                self.progress.failed_branches += 1
            if self.metrics is not None:
                self.metrics.failed_branches.inc()
            logger.warning(
                "optimizer call failed for a child of %s, branch dropped: %s: %s",
                current_prompt.version,
                type(exc).__name__,
                str(exc)[:300],
            )
            return None
        if new_prompt is None or not new_prompt.strip():
            # APO would silently skip it; record it so the DB shows what the optimizer did.
            self._create_versioned_prompt(agl.PromptTemplate(template=new_prompt or "", engine="f-string"))
            return None
        return new_prompt

    # --- evaluation ----------------------------------------------------------------------------
    async def get_rollout_results(
        self,
        rollout: list[agl.Rollout],
        *,
        prefix: str | None = None,
    ) -> list[RolloutResultForAPO]:
        """What the critique sees: messages intact, spans cut down to the rollout's own record.

        One of APO's critique templates dumps every span verbatim. With the Agno instrumentation
        that is thousands of tokens per rollout (raw request/response JSON), which overflowed an
        8k context in a measured run and says nothing the conversation does not. The full spans
        stay in the store (and Jaeger); the critique gets the root span's attributes and status.
        """
        results = await super().get_rollout_results(rollout, prefix=prefix)
        incomplete = sum(1 for result in results if not spans_complete(result["spans"]))
        with self.progress.lock:
            self.progress.rollouts_read += len(results)
            self.progress.incomplete_reads += incomplete
        if incomplete:
            logger.warning("%d of %d rollouts had spans missing when APO read them", incomplete, len(results))
        for result in results:
            result["spans"] = [compact_span(span) for span in result["spans"] if _worth_critiquing(span)]
        return results

    def _sample_parent_prompts(
        self, beam: list[VersionedPromptTemplate], round_num: int
    ) -> list[tuple[int, VersionedPromptTemplate]]:
        self._round = round_num + 1
        self._round_started = time.monotonic()
        with self.progress.lock:
            self.progress.round = self._round
        if self.metrics is not None:
            self.metrics.set_round(self._round)
        return super()._sample_parent_prompts(beam, round_num)

    async def evaluate_prompt_on_batch(
        self,
        prompt: VersionedPromptTemplate,
        resource_name: str,
        dataset: Sequence[MathTask],
        mode: agl.RolloutMode,
        *,
        prefix: str | None = None,
    ) -> tuple[list[RolloutResultForAPO], float]:
        if prompt.version in self._rejected:
            return [], 0.0
        results, score = await super().evaluate_prompt_on_batch(prompt, resource_name, dataset, mode, prefix=prefix)
        if mode == "val":
            prompt_id = self._ids[prompt.version]
            self.prompts.record_evaluation(prompt_id, "val", score, len(dataset))
            with self.progress.lock:
                if self._round == 0 and prompt.version == "v0" and self.progress.seed_score is None:
                    self.progress.seed_score = score
                    if self.metrics is not None:
                        self.metrics.seed_score.set(score)
            record = self.prompts.get(prompt_id)
            if self.metrics is not None:
                # Rescoring a beam member on the full set updates its own series, not a new one.
                first = record.round > 0 and prompt.version not in self._scored
                self._scored.add(prompt.version)
                self.metrics.candidate_scored(prompt.version, record.round, record.val_score or 0.0, candidate=first)
            if self._round == 0 and self._best_marked is None:
                # The seed's baseline: it is the best until a candidate beats it on the full set.
                self._mark_best(prompt.version, score)
            elif prompt.version == self._best_marked:
                # The best prompt rescored (APO rescores the beam leader on the full set each round):
                # its score is the DB's, which the summary reports too, so the live view follows it.
                self._show_best(prompt.version, record.val_score or 0.0)
        return results, score

    async def _evaluate_and_select_beam(
        self,
        candidates: list[VersionedPromptTemplate],
        resource_name: str,
        val_dataset_iterator: Any,
        round_num: int,
    ) -> list[VersionedPromptTemplate]:
        kept = [c for c in candidates if c.version not in self._rejected]
        for rejected in (c for c in candidates if c.version in self._rejected):
            rejected.score = 0.0
        return await super()._evaluate_and_select_beam(kept, resource_name, val_dataset_iterator, round_num)

    async def _update_best_prompt(
        self,
        beam: list[VersionedPromptTemplate],
        resource_name: str,
        val_dataset: Any,
        round_num: int,
    ) -> None:
        await super()._update_best_prompt(beam, resource_name, val_dataset, round_num)
        elapsed = time.monotonic() - self._round_started
        with self.progress.lock:
            self.progress.round_seconds[self._round] = elapsed
        logger.info("round %d/%d done in %.0fs", self._round, self.beam_rounds, elapsed)
        version = self._history_best_version
        if version is not None and version != self._best_marked:
            self._mark_best(version, self._history_best_score)

    def _mark_best(self, version: str, score: float) -> None:
        prompt_id = self._ids[version]
        self.prompts.mark_best(self.run_id, prompt_id)
        self._best_marked = version
        self._show_best(version, score)
        logger.info("best prompt is now %s (#%d), val score %.3f", version, prompt_id, score)
        if self.on_best is not None:
            self.on_best(prompt_id)

    def _show_best(self, version: str, score: float) -> None:
        """The best prompt and its score in the progress display and the metrics."""
        with self.progress.lock:
            self.progress.best_score = score
            self.progress.best_label = version
        if self.metrics is not None:
            self.metrics.set_best(version, score)

    def prompt_id(self, label: str) -> int:
        return self._ids[label]

    @property
    def best_prompt_id(self) -> int | None:
        return self._ids.get(self._best_marked) if self._best_marked else None
