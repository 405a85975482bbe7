"""The rollout cache in a real training: one agent call per (prompt, task), reused by --resume and eval.

A TINY training (real store server, runner processes, Agno agent, APO) against the scripted server,
where the agent is right only with HINT in its prompt and the optimizer edits the seed into HINTED,
then UNHINTED. APO re-evaluates the seed on the val batch it just scored (the 6 val tasks again) and
the new beam leader HINTED on the full val set (the 6 tasks of its candidate batch): those 12
rollouts are cache hits. What the scripted server received shows which rollouts called the model.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.trainer_cli import AGENT_MODEL, TINY, run_trainer, scripted_env, tiny_settings
from tests.support.trainer_cli import TINY_SPLITS as SPLITS
from tests.support.trainer_cli import TINY_TASKS as TASKS
from trainer.math_task import SEED_PROMPT
from trainer.records.prompt_db import PromptDB
from trainer.records.rollout_cache import CACHE_FILE, RolloutCache
from trainer.testing import ScriptedLLM, ScriptedOptimizer, agent_when, is_probe, prompt_contains, route
from trainer.training.train import open_caches

pytestmark = [pytest.mark.slow]

HINT = "Check the arithmetic once before answering."
HINTED = f"{SEED_PROMPT} {HINT}"
UNHINTED = f"{SEED_PROMPT} Keep units out of the final number."
VAL = len(SPLITS.val)


def rows(out: Path, run_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "runs" / run_id / "rollouts.jsonl").read_text().splitlines() if x]


def agent_calls(llm: ScriptedLLM) -> int:
    return sum(1 for r in llm.requests if r["model"] == AGENT_MODEL and not is_probe(r))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("run")
    optimizer = ScriptedOptimizer("- Check the arithmetic.", [HINTED, UNHINTED, UNHINTED, UNHINTED])
    script = route(agent=agent_when(TASKS, prompt_contains(HINT)), optimizer=optimizer,
                   optimizer_models=("scripted-critic", "scripted-editor"))  # fmt: skip
    found: dict[str, Any] = {"out": out}
    with ExitStack() as stack:
        llm = stack.enter_context(ScriptedLLM(script))
        # The cut on (TINY turns it off): UNHINTED comes after HINTED scored 1.0, so it is hopeless at once.
        result = run_trainer(["train", *TINY, "--candidate-cut", "--output", str(out)], cwd=out, **scripted_env(llm))
        assert result.returncode == 0, result.stderr[-5000:]
        found["summary"] = json.loads((out / "summary.json").read_text())
        found["calls"] = agent_calls(llm)
        evaluated = run_trainer(
            ["eval", "--prompt", str(out / "best_prompt.txt"), "--json", "--output", str(out),
             "--train-size", "4", "--val-size", "6", "--test-size", "6", "--seed", "11"],
            cwd=out, timeout=300, **scripted_env(llm),
        )  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        found["eval"] = json.loads(evaluated.stdout)
        found["eval_calls"] = agent_calls(llm) - found["calls"]
        resumed = run_trainer(["train", *TINY, "--output", str(out), "--resume"], cwd=out, **scripted_env(llm))
        assert resumed.returncode == 0, resumed.stderr[-5000:]
        found["resumed"] = json.loads((out / "summary.json").read_text())
    return found


def test_a_pair_evaluated_again_reuses_its_outcome(trained: dict[str, Any]) -> None:
    summary = trained["summary"]
    ledger = rows(trained["out"], summary["run_id"])
    hits = Counter((r["mode"], r["prompt_version"]) for r in ledger if r["cache_hit"])
    # The seed's round-1 beam batch, and the new leader's full-set score: both on tasks they had.
    assert hits == {("val", "v0"): VAL, ("val", "v1"): VAL}
    firsts = {r["rollout_id"]: r for r in ledger if not r["cache_hit"]}
    for hit in (r for r in ledger if r["cache_hit"]):
        first = firsts[hit["cached_from"]]
        assert (first["task_id"], first["prompt_version"]) == (hit["task_id"], hit["prompt_version"])
        assert (hit["reward"], hit["reply"]) == (first["reward"], first["reply"])
        assert hit["input_tokens"] == hit["output_tokens"] == 0 and hit["llm_seconds"] == 0.0
    # Every rollout that was no hit, and the test split's 2 x 6, called the model exactly once.
    assert trained["calls"] == len(ledger) - 2 * VAL + 2 * len(SPLITS.test)
    cache = summary["cache"]
    assert (cache["enabled"], cache["training_hits"], cache["test_hits"]) == (True, 2 * VAL, 0)
    assert cache["agent_calls"] == trained["calls"]


def test_a_candidate_that_cannot_reach_the_beam_is_cut(trained: dict[str, Any]) -> None:
    summary = trained["summary"]
    ledger = rows(trained["out"], summary["run_id"])
    ran = sum(1 for r in ledger if r["prompt_version"] == "v2")
    # Cancelled as soon as it was enqueued; the runners may have taken one or two before.
    assert summary["candidates_stopped_early"] == 1
    assert summary["rollouts_cancelled"] == VAL - ran >= VAL - 2
    assert summary["best_prompt_version"] == "v1"


def test_a_repeated_outcome_is_no_new_data_point(trained: dict[str, Any]) -> None:
    summary = trained["summary"]
    with PromptDB(trained["out"] / "prompts.db") as db:
        prompts = {p.label: p for p in db.list(summary["run_id"])}
    # Each val task counts once per prompt: the hits did not double the seed's or HINTED's n.
    assert (prompts["v0"].val_score, prompts["v0"].val_n) == (0.0, VAL)
    assert (prompts["v1"].val_score, prompts["v1"].val_n, prompts["v1"].is_best) == (1.0, VAL, True)
    assert summary["best_val"]["n"] == summary["seed_val"]["n"] == VAL


def test_eval_of_the_best_prompt_reuses_its_test_outcomes(trained: dict[str, Any]) -> None:
    score = trained["eval"]
    assert (score["n"], score["cache_hits"], trained["eval_calls"]) == (len(SPLITS.test), len(SPLITS.test), 0)
    assert score["score"] == trained["summary"]["best_test_score"] == 1.0


def test_resume_reuses_the_scored_best_prompts_outcomes(trained: dict[str, Any]) -> None:
    resumed = trained["resumed"]
    ledger = rows(trained["out"], resumed["run_id"])
    baseline = [r for r in ledger if r["mode"] == "val" and r["prompt_version"] == "v0"][:VAL]
    assert len(baseline) == VAL and all(r["cache_hit"] for r in baseline)  # the seed now is HINTED
    assert resumed["seed_val_score"] == 1.0 and resumed["seed_val"]["n"] == VAL
    assert resumed["cache"]["test_hits"] >= len(SPLITS.test)  # HINTED on the test split, again
    with RolloutCache(trained["out"] / CACHE_FILE) as cache:
        assert cache.count() == resumed["cache"]["entries"] > 0


def test_above_temperature_zero_there_is_no_cache(tmp_path: Path) -> None:
    with ExitStack() as stack:
        assert open_caches(tiny_settings(output_dir=tmp_path, temperature=0.5), stack) is None
        assert open_caches(tiny_settings(output_dir=tmp_path, rollout_cache=False), stack) is None
        assert open_caches(tiny_settings(output_dir=tmp_path), stack) is not None
    assert not (tmp_path / CACHE_FILE).exists()  # opened lazily: nothing written before a rollout
