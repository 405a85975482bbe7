"""A real, tiny APO training: embedded SmolLM2, a real Agent Lightning store server, runner processes.

These are the tests that keep the real model: it answers, a tiny training on it completes, and eval
reproduces a saved score. The 135M model gains nothing as its own optimizer, so they assert the
pipeline's facts (rollouts, rewards, spans, saved versions, files that agree), never a score gain.

llama.cpp is not repeatable with several slots batched together, nor when a slot reuses a prompt
prefix computed in another batch (measured: the same prompt scored 1/6, then 0/6). The model runs
here with one slot and no prompt cache (EMBEDDED_LLM_PARALLEL=1, EMBEDDED_LLM_CACHE_PROMPT=false), where
the same request gets the same reply, so eval must reproduce the recorded score exactly.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.pipeline import agl_store
from tests.support.trainer_cli import TINY, run_trainer
from trainer.records.prompt_db import PromptDB
from trainer.records.summary import Summary
from trainer.testing import ScriptedLLM, ScriptedOptimizer, prompt_rewrites, route, wrong_agent

pytestmark = [pytest.mark.llm, pytest.mark.slow]

EXPECTED_SPANS = Counter(
    {"math_rollout": 1, "math_solver.arun": 1, "OpenAILike.ainvoke": 1, "agentlightning.annotation": 1}
)
# A rollout the rollout cache answered calls no model: no agent run, no LLM call.
CACHE_HIT_SPANS = Counter({"math_rollout": 1, "agentlightning.annotation": 1})
REPEATABLE = {"EMBEDDED_LLM_PARALLEL": "1", "EMBEDDED_LLM_CACHE_PROMPT": "false"}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with agl_store(tmp_path_factory.mktemp("store")) as store:
        yield store.url


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[dict[str, Any]]:
    out = tmp_path_factory.mktemp("run")
    # The agent is the real model; APO's critique/edit calls go to the scripted optimizer, since the
    # 135M model writes until its reply cap as an optimizer and that is not what these tests are about.
    optimizer = ScriptedOptimizer("- End with: The answer is <number>.", prompt_rewrites())
    with ScriptedLLM(route(agent=wrong_agent([]), optimizer=optimizer, optimizer_models=("critic",))) as fake:
        result = run_trainer(
            # Demonstrations on (TINY turns them off): one branch edits, the other draws examples.
            ["train", *TINY, "--demos", "2", "--output", str(out), "--store-url", store_url],
            cwd=out,
            OPTIMIZER_BASE_URL=fake.base_url,
            GRADIENT_MODEL="critic",
            **REPEATABLE,
        )
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    summary = json.loads((out / "summary.json").read_text())
    assert {call.kind for call in optimizer.calls} == {"gradient", "edit"}
    yield {"out": out, "summary": summary, "stderr": result.stderr, "store_url": store_url}


def _store_rollouts(store_url: str) -> list[tuple[Any, list[Any]]]:
    import agentlightning as agl

    async def fetch() -> list[tuple[Any, list[Any]]]:
        client = agl.LightningStoreClient(store_url)
        try:
            rollouts = await client.query_rollouts()
            return [(r, list(await client.query_spans(r.rollout_id))) for r in rollouts]
        finally:
            await client.close()

    return asyncio.run(fetch())


def test_every_rollout_reached_the_store_with_reward_and_spans(trained: dict[str, Any]) -> None:
    from agentlightning.emitter.reward import find_final_reward

    from trainer.telemetry.spans import ROLLOUT_SPAN_NAME

    rollouts = _store_rollouts(trained["store_url"])
    ledger = [json.loads(line) for line in (trained["out"] / "runs" / trained["summary"]["run_id"]
                                            / "rollouts.jsonl").read_text().splitlines()]  # fmt: skip
    assert len(rollouts) == trained["summary"]["rollouts"] == len(ledger) > 0
    by_id = {row["rollout_id"]: row for row in ledger}
    for rollout, spans in rollouts:
        assert rollout.status == "succeeded", rollout
        reward = find_final_reward(spans)
        assert reward is not None, f"{rollout.rollout_id} has no reward span"
        assert reward == by_id[rollout.rollout_id]["reward"]
        roots = [s for s in spans if s.name == ROLLOUT_SPAN_NAME]
        assert len(roots) == 1, f"{rollout.rollout_id}: {len(roots)} root spans"
        assert roots[0].attributes["agentlightning.rollout_id"] == rollout.rollout_id
        assert roots[0].attributes["trainer.reward"] == reward
        # Exactly one of each: our root, the agent run and its LLM call (Agno instrumentation),
        # and the reward annotation the runner writes from the returned float.
        names = Counter(s.name for s in spans)
        if by_id[rollout.rollout_id]["cache_hit"]:
            assert roots[0].attributes["trainer.cache_hit"] is True
            assert names == CACHE_HIT_SPANS, f"{rollout.rollout_id}: {dict(names)}"
            continue
        assert names == EXPECTED_SPANS, f"{rollout.rollout_id}: {dict(names)}"
        agent_span = next(s for s in spans if s.name == "math_solver.arun")
        llm_span = next(s for s in spans if s.name == "OpenAILike.ainvoke")
        assert llm_span.parent_id == agent_span.span_id
        assert agent_span.parent_id == roots[0].span_id


def test_prompt_db_holds_seed_and_scored_candidates(trained: dict[str, Any]) -> None:
    summary = trained["summary"]
    with PromptDB(trained["out"] / "prompts.db") as prompts:
        records = prompts.list(summary["run_id"])
        run = next(r for r in prompts.runs() if r.run_id == summary["run_id"])
    seed = [p for p in records if p.round == 0]
    candidates = [p for p in records if p.round == 1]
    # The seed's val score: its baseline on the 6 val tasks. Its round-1 beam batch is the same 6
    # tasks, answered by the rollout cache, and a repeated outcome is not a new data point.
    assert len(seed) == 1 and seed[0].val_score is not None and seed[0].val_n == 6
    assert summary["cache"]["training_hits"] >= 6
    assert candidates, "APO produced no candidate at all"
    for candidate in candidates:
        assert candidate.parent_id == seed[0].id
        assert candidate.val_score is not None  # scored, or rejected (0.0) with a reason
        assert (candidate.status == "rejected") == (candidate.reject_reason is not None)
    assert sum(1 for p in records if p.is_best) == 1
    assert run.status == "completed"
    assert summary["candidates"] == len(candidates)
    # One branch asked the optimizer for an instruction edit, the other drew two gold examples.
    assert sorted(str(p.change) for p in candidates) == ["examples", "instruction"]
    drawn = next(p for p in candidates if p.change == "examples")
    assert len(drawn.demos) == 2 and drawn.instruction == seed[0].instruction
    assert summary["demonstrations"]["candidates_by_change"] == {"examples": 1, "instruction": 1}
    assert summary["candidates_rejected"] == sum(1 for p in candidates if p.status == "rejected")


def test_best_files_and_summary_agree_with_db(trained: dict[str, Any]) -> None:
    out, summary = trained["out"], trained["summary"]
    with PromptDB(out / "prompts.db") as prompts:
        best = prompts.best(summary["run_id"])
        seed = next(p for p in prompts.list(summary["run_id"]) if p.round == 0)
    assert best is not None and best.is_best
    assert (out / "best_prompt.txt").read_text() == best.template
    meta = json.loads((out / "best_prompt.json").read_text())
    assert meta["id"] == best.id and meta["val_score"] == best.val_score
    assert summary["best_prompt_id"] == best.id and summary["best_prompt_version"] == best.label
    assert summary["best_val_score"] == best.val_score
    assert summary["seed_val_score"] == seed.val_score
    for key in ("seed_test_score", "best_test_score", "rollouts", "llm_tokens", "wall_seconds"):
        assert isinstance(summary[key], int | float), key
    assert summary["llm_tokens"] > 0
    assert 0 < summary["test_seconds"] < summary["wall_seconds"]  # the test split's 6+6 rollouts ran
    assert summary["seed_test"]["n"] == 6 and summary["paired_test"]["n"] == 6
    paired = Summary.load(out / "summary.json").paired_test
    if paired.only_best == paired.only_seed:
        assert summary["verdict"].startswith("no difference")
    elif paired.significant:
        assert "significant" in summary["verdict"] and "noise" not in summary["verdict"]
    else:
        assert "within noise" in summary["verdict"]
    png = (out / "reward_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.parametrize("cache", ["false", "true"])
def test_eval_of_saved_best_reproduces_its_score(trained: dict[str, Any], cache: str) -> None:
    out, summary = trained["out"], trained["summary"]
    result = run_trainer(
        ["eval", "--prompt", str(out / "best_prompt.txt"), "--split", "val", "--json",
         "--output", str(out), "--seed", "11", "--train-size", "4", "--val-size", "6", "--test-size", "6"],
        cwd=out,
        timeout=300,
        ROLLOUT_CACHE=cache,
        **REPEATABLE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    score = json.loads(result.stdout)
    recorded = summary["best_val"]  # the val score the prompt DB recorded during training
    # Recorded: each val task once (the rollout cache answered the repeats). Without the cache the
    # model answers again, the same way (it is run repeatably); with it, eval reuses those outcomes.
    assert score["n"] == recorded["n"] == 6
    assert score["correct"] == recorded["correct"], (score, recorded)
    assert score["cache_hits"] == (6 if cache == "true" else 0)
