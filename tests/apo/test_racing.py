"""Tests for trainer.apo.racing and its use in TrackedAPO: a hopeless candidate's rollouts are cancelled.

The cut must be exact: checked exhaustively on small batches (every order of outcomes), then in a
real in-process APO run (store, runner, Agno agent, scripted server) where a candidate that is
always wrong stops once it can no longer reach the seed's score.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter
from types import SimpleNamespace
from typing import Any

import agentlightning as agl
import pytest
from agentlightning.algorithm.apo import apo as apo_module

from tests.apo.test_tracked_apo import TRACER, CyclingChoice, RecordingObserver, fit_bounded
from trainer.agent.model import ModelSpec
from trainer.agent.solve import RolloutConfig
from trainer.apo.algorithm import TrackedAPO
from trainer.apo.optimizer_llm import UsageLedger, optimizer_client
from trainer.apo.racing import BeamCut
from trainer.data.problems import generate_problems
from trainer.math_task import MATH, SEED_PROMPT
from trainer.testing import ScriptedLLM, ScriptedOptimizer, agent_when, route
from trainer.training.rollout import make_rollout


def test_no_bar_until_the_beam_is_full() -> None:
    cut = BeamCut(beam_width=2, scores=[0.9])
    assert cut.bar() is None and not cut.hopeless([0.0] * 9, remaining=1)
    cut.scores.append(0.4)
    assert cut.bar() == 0.4


def test_a_tie_with_an_earlier_prompt_loses() -> None:
    cut = BeamCut(beam_width=1, scores=[0.5])
    assert not cut.hopeless([1.0, 0.0], remaining=2)  # best case 3/4
    assert cut.hopeless([0.0, 0.0], remaining=2)  # best case 2/4: a tie, and ties go to the earlier prompt
    assert cut.hopeless([], remaining=4) is False  # best case 1.0
    assert BeamCut(beam_width=1, scores=[1.0]).hopeless([], remaining=4)  # nothing beats a perfect score


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("beam_width", [1, 2])
def test_the_cut_never_drops_a_candidate_that_could_still_enter_the_beam(n: int, beam_width: int) -> None:
    """Every sequence of n 0/1 rewards, against every bar: once hopeless, no completion of the
    sequence ranks the candidate into the beam (APO's stable sort puts earlier prompts first)."""
    for earlier in itertools.product([k / 4 for k in range(5)], repeat=beam_width):
        cut = BeamCut(beam_width, scores=list(earlier))
        for rewards in itertools.product([0.0, 1.0], repeat=n):
            for seen in range(n + 1):
                if not cut.hopeless(rewards[:seen], remaining=n - seen):
                    continue
                # Every completion of this prefix is one of the sequences iterated: none may enter the
                # beam. APO's stable sort ranks the candidate after every earlier prompt scoring as much.
                final = sum(rewards) / n
                ahead = sum(1 for score in earlier if score >= final - 1e-12)
                assert ahead >= beam_width, (earlier, rewards, seen)


def test_a_hopeless_candidate_stops_and_its_queued_rollouts_are_cancelled(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Beam 1: the seed is right on half of the val tasks; its one child is always wrong, so after
    half the batch failed it can at best tie with the seed, and what is still queued is cancelled."""
    problems = generate_problems(14, seed=5)
    train, val = problems[:2], problems[2:14]
    lucky = {t["question"] for t in val[::2]}
    child = f"{SEED_PROMPT} Answer in words."
    optimizer = ScriptedOptimizer("- Be wordy.", [child])
    agent = agent_when(problems, lambda system, question: child not in system and question in lucky)
    observer = RecordingObserver()
    with (
        # 0.2 s a reply: the batch takes long enough for the cut to act between polls.
        ScriptedLLM(route(agent=agent, optimizer=optimizer, optimizer_models=("critic",)), latency=0.2) as server,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setattr(apo_module, "random", SimpleNamespace(choice=CyclingChoice().choice, sample=random.sample))
        client = optimizer_client(
            server.base_url, None, max_tokens=256, timeout=10.0, max_retries=0, usage=UsageLedger()
        )
        algorithm = TrackedAPO(
            client, observer=observer, run_id="run-cut", guard=None, max_reward=1.0,
            gradient_model="critic", apply_edit_model="critic", gradient_batch_size=2, val_batch_size=len(val),
            beam_width=1, branch_factor=1, beam_rounds=1, rollout_batch_timeout=60.0, run_initial_validation=True,
        )  # fmt: skip
        spec = ModelSpec(server.base_url, "agent", None, temperature=0.0, max_tokens=64, timeout=10.0, max_retries=0)
        tracer, store = TRACER, agl.InMemoryLightningStore()
        reads = count_span_reads(store, mp)
        lightning = agl.Trainer(
            algorithm=algorithm, n_runners=1, store=store, adapter=agl.TraceToMessages(), tracer=tracer,
            strategy=agl.SharedMemoryExecutionStrategy(n_runners=1, main_thread="algorithm", join_timeout=10.0),
            runner=agl.LitAgentRunner(tracer=tracer, poll_interval=0.02, interval_jitter=0.0),
            initial_resources={"prompt_template": agl.PromptTemplate(template=SEED_PROMPT, engine="f-string")},
        )  # fmt: skip
        with caplog.at_level(logging.INFO, logger="trainer.apo.algorithm"):
            fit_bounded(lightning, make_rollout(RolloutConfig(model=spec, task=MATH)), train, val)
    rollouts = asyncio.run(store.query_rollouts())
    by_status: dict[str, list[Any]] = {}
    for r in (r for r in rollouts if r.resources_id == "run-cut~v1"):
        by_status.setdefault(r.status, []).append(r)
    stopped = observer.named("candidate_stopped")
    assert len(stopped) == 1 and stopped[0][1] == "v1"
    ran = len(by_status.get("succeeded", []))
    # Hopeless after 6 failures of 12 (best case 6/12 ties the seed's 0.5); a few more finish before the
    # next poll sees it, or were running when it cancelled the rest.
    assert 6 <= ran <= 9 and len(by_status["cancelled"]) == len(val) - ran > 0
    scored = dict((e[1], e[4]) for e in observer.named("prompt_scored"))
    assert scored["v1"].n == ran and scored["v1"].value == 0.0
    assert algorithm.best_label == "v0"
    cut_lines = [r for r in caplog.records if "can no longer reach the beam" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in cut_lines] == [
        (logging.INFO, f"v1 can no longer reach the beam: {len(val) - ran} of its {len(val)} val rollouts cancelled")
    ]
    # The cut read each finished rollout's spans for its reward; the batch's results reuse that read.
    seed_reads = {reads[r.rollout_id] for r in rollouts if r.resources_id == "run-cut~v0" and r.mode == "val"}
    assert seed_reads == {reads[r.rollout_id] for r in by_status["succeeded"]}, (seed_reads, reads)


def count_span_reads(store: agl.InMemoryLightningStore, mp: pytest.MonkeyPatch) -> Counter[str]:
    reads: Counter[str] = Counter()
    query_spans = store.query_spans

    async def counted(rollout_id: str, *args: Any, **kwargs: Any) -> Any:
        reads[rollout_id] += 1
        return await query_spans(rollout_id, *args, **kwargs)

    mp.setattr(store, "query_spans", counted)
    return reads
