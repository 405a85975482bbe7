"""Agent Lightning's APO, made durable, bounded and honest.

Stock APO keeps everything in memory, has no hooks, and dies on the first failed optimizer call.
``TrackedAPO`` overrides a few of its steps (never its search logic) to:

- report every prompt version it creates (template, parent, round), every validation score and
  every change of the best prompt to an :class:`~trainer.apo.observer.APOObserver` as it happens
  (the prompt DB is one, so a killed run loses nothing already scored);
- apply the candidate guard before any rollout is spent on a candidate (rejected candidates score
  0, never enter the beam, and the reason is reported);
- turn a failed critique or edit into the loss of that branch only;
- with demonstrations, keep each prompt's instruction and examples apart: some branches draw a
  new example set (or pair the best instruction with the best set) instead of an edit, an edit
  rewrites the instruction only, and rewarded train rollouts feed the pool (trainer.apo.demos).

The APO internals it overrides are private to Agent Lightning 0.3.0; ``tests/apo`` pins them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import agentlightning as agl
from agentlightning.algorithm.apo.apo import APO, RolloutResultForAPO, VersionedPromptTemplate

from trainer.agent.prompt import Prompt, change_of
from trainer.agent.template import TEMPLATE_ENGINE
from trainer.apo.batch_wait import STORE_ERRORS, BatchRun, HopelessCheck, cancel_queued, wait_for_batch
from trainer.apo.demos import ExampleSearch
from trainer.apo.guard import GuardLimits, rejection_reason
from trainer.apo.observer import APOObserver
from trainer.apo.optimizer_llm import optimizer_role
from trainer.apo.racing import BeamCut
from trainer.apo.resources import resources_id
from trainer.apo.scoring import BatchTally, EndpointWatch, StoreLost, ValScore, tally
from trainer.apo.span_reads import compact_span, spans_complete, worth_critiquing
from trainer.task import Problem

logger = logging.getLogger(__name__)


class TrackedAPO(APO[Problem]):
    """APO that reports, guards and survives; see the module docstring."""

    def __init__(
        self,
        client: Any,
        *,
        observer: APOObserver,
        guard: GuardLimits | None,
        run_id: str,
        store_url: str | None = None,
        max_endpoint_failures: int = 8,
        seed: Prompt | None = None,
        examples: ExampleSearch | None = None,
        reuses_outcomes: bool = False,
        max_reward: float | None = None,
        **apo_kwargs: Any,
    ) -> None:
        super().__init__(client, **apo_kwargs)
        self.max_reward = max_reward  # None: no early stop of hopeless candidates (trainer.apo.racing)
        self._cut: BeamCut | None = None  # this round's scores, while its beam is being chosen
        # The rollout cache is on: a prompt's val tasks count once each in its pooled score.
        self.reuses_outcomes = reuses_outcomes
        self._counted: dict[str, set[str]] = {}  # label -> val tasks in its pooled score
        self.seed = seed
        self.examples = examples
        self._parts: dict[str, Prompt] = {}  # label -> its instruction and demonstrations
        self._pending: dict[str, Prompt] = {}  # rendered candidate -> its parts, until APO versions it
        self._branch = 0  # branches started in this round
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
        self._full_set: set[str] = set()  # prompts scored on the whole val set: the best is one of them
        self._prompts: dict[str, VersionedPromptTemplate] = {}  # in creation order
        self._watch = EndpointWatch(max_endpoint_failures)
        self.run_id = run_id
        self.store_url = store_url
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
        parts = self._pending.pop(template, None) or self._seed_or_plain(template, first=parent is None)
        parent_parts = self._parts.get(parent.version) if parent is not None else None
        reason = None
        if parent_parts is not None and self.guard is not None:
            reason = rejection_reason(parts, parent=parent_parts, seen=self._templates, limits=self.guard)
        self._created_in[versioned.version] = self._round
        self._prompts[versioned.version] = versioned
        self._parts[versioned.version] = parts
        self._templates.append(template)
        self.observer.prompt_created(
            versioned.version, parts, parent=parent.version if parent else None, round_number=self._round,
            change=change_of(parts, parent_parts),
        )  # fmt: skip
        if reason is not None:
            self._rejected.add(versioned.version)
            self.observer.prompt_rejected(versioned.version, reason, round_number=self._round)
            logger.info("candidate %s rejected before evaluation: %s", versioned.version, reason)
        return versioned

    def _parts_of(self, prompt: VersionedPromptTemplate) -> Prompt:
        return self._parts.get(prompt.version, Prompt(prompt.prompt_template.template))

    def _seed_or_plain(self, template: str, *, first: bool) -> Prompt:
        if first and self.seed is not None and self.seed.render() == template:
            return self.seed
        return Prompt(template)

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
        parts = self._parts_of(current_prompt)
        branches = self.beam_width * self.branch_factor
        kind = self.examples.branch_kind(branches, self._round, self._branch) if self.examples else "instruction"
        self._branch += 1
        if kind != "instruction" and self.examples is not None:
            drawn = self._example_candidate(kind, parts)
            if drawn is not None:
                return drawn
            logger.info("no demonstrations to draw yet: %s gets an instruction edit instead", current_prompt.version)
        # The optimizer rewrites the instruction only; the parent's demonstrations stay as they are.
        shown = VersionedPromptTemplate(
            current_prompt.version, agl.PromptTemplate(template=parts.instruction, engine=TEMPLATE_ENGINE),
            current_prompt.score,
        )  # fmt: skip
        try:
            # The critique call is tagged inside compute_textual_gradient; what remains is the edit.
            with optimizer_role("edit"):
                new_prompt = await super().textual_gradient_and_apply_edit(shown, rollout, prefix=prefix)
        except Exception as exc:
            # One failed critique/edit (context overflow, endpoint down after retries) costs this
            # branch, not the run: APO skips a branch whose edit is empty.
            self.observer.branch_failed(current_prompt.version, exc)
            logger.warning("optimizer call failed for a child of %s, branch dropped: %s: %s",
                           current_prompt.version, type(exc).__name__, str(exc)[:300])  # fmt: skip
            return None
        if new_prompt is None or not new_prompt.strip():  # APO would skip it silently; the DB shows it
            self._create_versioned_prompt(agl.PromptTemplate(template=new_prompt or "", engine=TEMPLATE_ENGINE))
            return None
        return self._propose(parts.with_instruction(new_prompt))

    def _example_candidate(self, kind: str, parts: Prompt) -> str | None:
        """A branch that changes the examples: a new set for ``parts``, or the best instruction x best set."""
        assert self.examples is not None
        if kind == "combine":
            scored = [label for label in self._scores if label not in self._rejected]  # creation order breaks ties
            ranked = sorted(scored, key=lambda label: -self._scores[label].value)
            combined = self.examples.combination([self._parts[label] for label in ranked], self._templates)
            if combined is not None:
                owner = next(label for label in ranked if self._parts[label].instruction == combined.instruction)
                self._parent = self._prompts[owner]  # lineage follows the instruction
                return self._propose(combined)
        drawn = self.examples.examples_for(parts)
        return None if drawn is None else self._propose(drawn)

    def _propose(self, prompt: Prompt) -> str:
        """The rendered candidate APO versions next; its parts wait for _create_versioned_prompt."""
        rendered = prompt.render()
        self._pending[rendered] = prompt
        return rendered

    # --- evaluation ----------------------------------------------------------------------------
    async def get_rollout_results(
        self,
        rollout: list[agl.Rollout],
        *,
        prefix: str | None = None,
        read: Mapping[str, RolloutResultForAPO] | None = None,
    ) -> list[RolloutResultForAPO]:
        """What the critique sees: messages intact, spans cut down to the rollout's own record.

        One of APO's critique templates dumps every span verbatim. With the Agno instrumentation
        that is thousands of tokens per rollout (raw request/response JSON), which overflowed an
        8k context in a measured run and says nothing the conversation does not. The full spans
        stay in the store (and Jaeger); the critique gets the root span's attributes and status.
        ``read``: results already read for some of the rollouts (by the cut), not read again.
        """
        read = read or {}
        fresh = iter(await super().get_rollout_results([r for r in rollout if r.rollout_id not in read], prefix=prefix))
        results = [read[r.rollout_id] if r.rollout_id in read else next(fresh) for r in rollout]  # in their order
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
        self._branch = 0
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
        """Stock APO's evaluation, with faults kept out of the score (trainer.apo.scoring).

        Returns what APO ranks by: for val, the prompt's pooled val score (-inf while it has none).
        """
        if prompt.version in self._rejected:
            return [], 0.0
        if mode == "train" and self.examples and self.examples.skips_train_batch(
                self.beam_width * self.branch_factor, self._round, self._branch, self._parts_of(prompt)):  # fmt: skip
            return [], 0.0  # an examples branch the pool can already fill (ExampleSearch.skips_train_batch)
        # Only a prompt with no score yet can be cut: a beam member's score pools earlier batches.
        cut = self._cut if mode == "val" and prompt.version not in self._scores else None
        try:
            run = await self._run_batch(prompt, resource_name, dataset, mode, cut)
        except STORE_ERRORS as exc:  # enqueueing or reading results back: the store went away
            raise StoreLost(f"the store at STORE_URL={self._store_name} stopped answering ({exc!r}); "
                            "nothing it held back was scored") from exc  # fmt: skip
        results = run.results
        self._watch.observe(results)
        if mode == "train" and self.examples is not None:
            self.examples.pool.harvest(results)
        batch = tally(results, planned=run.planned, task_ids=run.task_ids)
        if mode != "val":
            return results, batch.score.value if batch.score else 0.0
        if run.cancelled:
            self.observer.candidate_stopped(prompt.version, ran=run.planned, cancelled=run.cancelled)
        # Cut before any rollout ran (the bar is already the highest reward): no score, out of the beam.
        score = self._record_val(prompt.version, batch) if run.planned else float("-inf")
        if self._cut is not None:
            self._cut.scores.append(score)
        return results, score

    async def _run_batch(
        self,
        prompt: VersionedPromptTemplate,
        resource_name: str,
        dataset: Sequence[Problem],
        mode: agl.RolloutMode,
        cut: BeamCut | None = None,
    ) -> BatchRun:
        """Enqueue one rollout per task and wait for them (with ``cut``: until the prompt is hopeless,
        then cancel what is still queued and wait for the rest); the finished ones, in finishing order."""
        store = self.get_store()
        resources: agl.NamedResources = {resource_name: prompt.prompt_template}
        # The run id in the resources id: runs sharing a store never evaluate each other's "v3".
        update = await store.update_resources(resources_id(self.run_id, prompt.version), resources)
        ids = [
            (await store.enqueue_rollout(input=task, mode=mode, resources_id=update.resources_id)).rollout_id
            for task in dataset
        ]
        deadline = time.monotonic() + self.rollout_batch_timeout
        hopeless = HopelessCheck(store, cut, len(ids), self.get_adapter()) if cut is not None else None
        finished = await wait_for_batch(store, ids, timeout=self.rollout_batch_timeout, store_name=self._store_name,
                                        stop=hopeless)  # fmt: skip
        cancelled: set[str] = set()
        if hopeless is not None and hopeless.stopped and len(finished) < len(ids):
            unfinished = [i for i in ids if i not in {r.rollout_id for r in finished}]
            cancelled = await cancel_queued(store, unfinished, timeout=max(deadline - time.monotonic(), 0.0))
            live = [i for i in ids if i not in cancelled]
            finished = await wait_for_batch(store, live, timeout=max(deadline - time.monotonic(), 0.0),
                                            store_name=self._store_name)  # fmt: skip
            # Nothing cancelled (the rest was already running) is no event for an operator.
            logger.log(logging.INFO if cancelled else logging.DEBUG, "%s can no longer reach the beam: %d of its "
                       "%d val rollouts cancelled", prompt.version, len(cancelled), len(ids))  # fmt: skip
        if len(finished) < len(ids) - len(cancelled):
            logger.warning(
                "%s: %d of %d rollouts finished within ROLLOUT_BATCH_TIMEOUT=%gs",
                prompt.version, len(finished), len(ids) - len(cancelled), self.rollout_batch_timeout,
            )  # fmt: skip
        finished.sort(key=lambda rollout: rollout.end_time or 0.0)
        task_ids = [r.input.get("id") if isinstance(r.input, dict) else None for r in finished]
        read = hopeless.read if hopeless is not None else None
        results = await self.get_rollout_results(finished, read=read) if finished else []
        return BatchRun(results, task_ids, planned=len(ids) - len(cancelled), cancelled=len(cancelled))

    @property
    def _store_name(self) -> str:
        return self.store_url or "(the in-process store)"

    def _record_val(self, label: str, batch: BatchTally) -> float:
        """Pool ``batch`` into the prompt's val score, tell the observers; APO's ranking value."""
        round_number = self._created_in.get(label, 0)
        measured = batch.score
        previous = self._scores.get(label)
        if measured is None:
            reason = batch.why_unscored()
            self.observer.prompt_unscored(label, round_number=round_number, planned=batch.planned, reason=reason)
            logger.warning("evaluation of %s left unscored: %s", label, reason)
            return previous.value if previous is not None else float("-inf")
        addition: ValScore | None = measured
        if self.reuses_outcomes:
            counted = self._counted.setdefault(label, set())
            addition = batch.score_beyond(counted)
            counted.update(task for task in batch.tasks if task is not None)
        current = previous or measured
        if previous is not None and addition is not None:
            current = previous.pooled_with(addition)
        self._scores[label] = current
        self.observer.prompt_scored(
            label, round_number=round_number, batch=measured, current=current, first=previous is None
        )
        if self._round == 0 and self._best is None:
            # The seed's baseline: it is the best until a candidate beats it on the full set.
            self._full_set.add(label)
            self._mark_best(label)
        elif label == self._best:
            self.observer.best_rescored(label, current)
        return current.value

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
        self._cut = BeamCut(self.beam_width, self.max_reward) if self.max_reward is not None else None
        try:
            beam = await super()._evaluate_and_select_beam(kept, resource_name, val_dataset_iterator, round_num)
        finally:
            self._cut = None
        # APO stored each candidate's pooled score; a beam member's pool may have grown since.
        for member in beam:
            pooled = self._scores.get(member.version)
            member.score = pooled.value if pooled is not None else float("-inf")
        return beam

    async def _update_best_prompt(
        self,
        beam: list[VersionedPromptTemplate],
        resource_name: str,
        val_dataset: Any,
        round_num: int,
    ) -> None:
        """Score the beam leader on the full val set, then pick the best on pooled scores.

        Stock APO compares the leader's latest full-set score with the score the best had when it
        became the best; here every prompt scored on the full val set at least once competes with
        the score it has now.
        """
        leader = beam[0]
        await self.evaluate_prompt_on_batch(leader, resource_name, val_dataset, mode="val")
        if leader.version in self._scores:
            self._full_set.add(leader.version)
        elapsed = time.monotonic() - self._round_started
        self.observer.round_finished(self._round, elapsed)
        logger.info("round %d/%d done in %.0fs", self._round, self.beam_rounds, elapsed)
        if not self._full_set:
            return
        # A change of best must be a gain: ties keep the current best, then the earlier prompt.
        order = {label: i for i, label in enumerate(self._prompts)}
        best = max(self._full_set, key=lambda label: (self._scores[label].value, label == self._best, -order[label]))
        self._history_best_version = best
        self._history_best_prompt = self._prompts[best].prompt_template
        self._history_best_score = self._scores[best].value
        if best != self._best:
            self._mark_best(best)

    def _mark_best(self, label: str) -> None:
        self._best = label
        score = self._scores[label]
        self.observer.best_changed(label, score)
        logger.info("best prompt is now %s, val score %.3f (n=%d)", label, score.value, score.n)

    @property
    def best_label(self) -> str | None:
        return self._best
