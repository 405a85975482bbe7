"""Agent Lightning's APO, made durable, bounded and honest.

Stock APO keeps everything in memory, has no hooks, and dies on the first failed optimizer call.
``TrackedAPO`` overrides a few of its steps (never its search logic) to:

- report every prompt version it creates (template, parent, round), every validation score and
  every change of the best prompt to an :class:`~trainer.apo.observer.APOObserver` as it happens
  (the prompt DB is one, so a killed run loses nothing already scored);
- apply the candidate guard before any rollout is spent on a candidate (rejected candidates score
  0, never enter the beam, and the reason is reported);
- turn a failed critique or edit into the loss of that branch only.

The APO internals it overrides are private to Agent Lightning 0.3.0; ``tests/apo`` pins them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import agentlightning as agl
from agentlightning.algorithm.apo.apo import APO, RolloutResultForAPO, VersionedPromptTemplate

from trainer.agent.template import TEMPLATE_ENGINE
from trainer.apo.guard import GuardLimits, rejection_reason
from trainer.apo.observer import APOObserver, ValScore
from trainer.apo.optimizer_llm import optimizer_role
from trainer.apo.span_reads import compact_span, spans_complete, worth_critiquing
from trainer.task import Problem

logger = logging.getLogger(__name__)


class TrackedAPO(APO[Problem]):
    """APO that reports, guards and survives; see the module docstring."""

    def __init__(self, client: Any, *, observer: APOObserver, guard: GuardLimits | None, **apo_kwargs: Any) -> None:
        super().__init__(client, **apo_kwargs)
        self.observer = observer
        self.guard = guard
        self._rejected: set[str] = set()
        self._created_in: dict[str, int] = {}  # label -> round the prompt was created in
        self._scores: dict[str, ValScore] = {}
        self._templates: list[str] = []
        self._parent: VersionedPromptTemplate | None = None
        self._round = 0
        self._best: str | None = None
        self._round_started = time.monotonic()
        observer.rounds_planned(self.beam_rounds)

    async def run(self, train_dataset: Any = None, val_dataset: Any = None) -> None:
        try:
            await super().run(train_dataset=train_dataset, val_dataset=val_dataset)
        finally:
            # Both clients hold HTTP sessions bound to this event loop: closed here, or aiohttp
            # reports "Unclosed connector" when the process exits.
            store = self.get_store()
            if isinstance(store, agl.LightningStoreClient):
                await store.close()
            close = getattr(self.async_openai_client, "close", None)
            if close is not None:
                await close()

    # --- versions ----------------------------------------------------------------------------
    def _create_versioned_prompt(
        self, prompt_template: agl.PromptTemplate, *, score: float | None = None
    ) -> VersionedPromptTemplate:
        versioned = super()._create_versioned_prompt(prompt_template, score=score)
        template = prompt_template.template
        parent = self._parent
        reason = None
        if parent is not None and self.guard is not None:
            reason = rejection_reason(
                template, parent=parent.prompt_template.template, seen=self._templates, limits=self.guard
            )
        self._created_in[versioned.version] = self._round
        self._templates.append(template)
        self.observer.prompt_created(
            versioned.version, template, parent=parent.version if parent else None, round_number=self._round
        )
        if reason is not None:
            self._rejected.add(versioned.version)
            self.observer.prompt_rejected(versioned.version, reason, round_number=self._round)
            logger.info("candidate %s rejected before evaluation: %s", versioned.version, reason)
        return versioned

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
            self.observer.branch_failed(current_prompt.version, exc)
            logger.warning(
                "optimizer call failed for a child of %s, branch dropped: %s: %s",
                current_prompt.version,
                type(exc).__name__,
                str(exc)[:300],
            )
            return None
        if new_prompt is None or not new_prompt.strip():
            # APO would silently skip it; record it so the DB shows what the optimizer did.
            self._create_versioned_prompt(agl.PromptTemplate(template=new_prompt or "", engine=TEMPLATE_ENGINE))
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
        self.observer.rollouts_read(len(results), incomplete)
        if incomplete:
            logger.warning("%d of %d rollouts had spans missing when APO read them", incomplete, len(results))
        for result in results:
            result["spans"] = [compact_span(span) for span in result["spans"] if worth_critiquing(span)]
        return results

    def _sample_parent_prompts(
        self, beam: list[VersionedPromptTemplate], round_num: int
    ) -> list[tuple[int, VersionedPromptTemplate]]:
        self._round = round_num + 1
        self._round_started = time.monotonic()
        self.observer.round_started(self._round)
        return super()._sample_parent_prompts(beam, round_num)

    async def evaluate_prompt_on_batch(
        self,
        prompt: VersionedPromptTemplate,
        resource_name: str,
        dataset: Sequence[Problem],
        mode: agl.RolloutMode,
        *,
        prefix: str | None = None,
    ) -> tuple[list[RolloutResultForAPO], float]:
        if prompt.version in self._rejected:
            return [], 0.0
        results, score = await super().evaluate_prompt_on_batch(prompt, resource_name, dataset, mode, prefix=prefix)
        if mode == "val":
            self._record_val(prompt.version, ValScore(score, len(dataset)))
        return results, score

    def _record_val(self, label: str, batch: ValScore) -> None:
        first = label not in self._scores
        previous = self._scores.get(label)
        # The larger sample is the better estimate: a mini-batch never overrides a full-set score.
        current = batch if previous is None or batch.n >= previous.n else previous
        self._scores[label] = current
        self.observer.prompt_scored(
            label, round_number=self._created_in.get(label, 0), batch=batch, current=current, first=first
        )
        if self._round == 0 and self._best is None:
            # The seed's baseline: it is the best until a candidate beats it on the full set.
            self._mark_best(label)
        elif label == self._best:
            # APO rescores the beam leader on the full set each round: everyone shows its new score.
            self.observer.best_rescored(label, current)

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
        self.observer.round_finished(self._round, elapsed)
        logger.info("round %d/%d done in %.0fs", self._round, self.beam_rounds, elapsed)
        version = self._history_best_version
        if version is not None and version != self._best:
            self._mark_best(version)

    def _mark_best(self, label: str) -> None:
        self._best = label
        score = self._scores[label]
        self.observer.best_changed(label, score)
        logger.info("best prompt is now %s, val score %.3f (n=%d)", label, score.value, score.n)

    @property
    def best_label(self) -> str | None:
        return self._best
