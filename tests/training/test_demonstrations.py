"""Demonstrations beside APO's edits, proven where the right examples provably matter.

The scripted agent (trainer.testing.prompt_shows_kind) is right only when its system prompt holds a
worked example of the question's kind; no instruction helps it, so plain APO (DEMOS=0), whose
scripted optimizer can only reword the instruction, cannot move off 0. Two trainings on the same
scripted server with the default budget (rounds, beam, branches, batches, splits): plain APO and
the default demonstrations. This is a test of the search, not of a model: with demonstrations the
best prompt reaches a val score plain APO cannot, and the held-out test confirms it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import trainer_env
from trainer.agent.prompt import Prompt
from trainer.apo.plan import expected_rollouts
from trainer.config import Settings
from trainer.data.splits import load_splits
from trainer.records.prompt_db import PromptDB, PromptRecord
from trainer.records.summary import Summary
from trainer.testing import ScriptedLLM, ScriptedOptimizer, agent_when, prompt_rewrites, prompt_shows_kind, route

pytestmark = [pytest.mark.slow]

DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
SPLITS = load_splits(None, DEFAULTS.train_size, DEFAULTS.val_size, DEFAULTS.test_size, DEFAULTS.seed)
TASKS = [*SPLITS.train, *SPLITS.val, *SPLITS.test]
HELD_OUT = [*SPLITS.val, *SPLITS.test]
TIMEOUT = 900


def start(out: Path, llm: ScriptedLLM, *flags: str) -> subprocess.Popen[str]:
    env = trainer_env(OPENAI_BASE_URL=llm.base_url, AGENT_MODEL="scripted-agent", GRADIENT_MODEL="critic")
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", "--output", str(out), *flags],
        cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    optimizer = ScriptedOptimizer("- Show the arithmetic before the final line.", prompt_rewrites())
    agent = agent_when(TASKS, prompt_shows_kind(TASKS))
    with ScriptedLLM(route(agent=agent, optimizer=optimizer, optimizer_models=("critic",))) as llm:
        outs = {name: tmp_path_factory.mktemp(name) for name in ("plain", "demos", "gold")}
        # All at once: the scripted server answers in microseconds, the runners are the cost.
        procs = {"plain": start(outs["plain"], llm, "--demos", "0"), "demos": start(outs["demos"], llm),
                 "gold": start(outs["gold"], llm, "--demo-source", "gold")}  # fmt: skip
        results = {name: proc.communicate(timeout=TIMEOUT) for name, proc in procs.items()}
    found: dict[str, dict[str, Any]] = {}
    for name, proc in procs.items():
        stdout, stderr = results[name]
        assert proc.returncode == 0, f"{name} training failed:\n{stdout[-2000:]}\n{stderr[-5000:]}"
        out = outs[name]
        with PromptDB(out / "prompts.db") as db:
            prompts = db.list()
            best = db.best()
        found[name] = {"out": out, "summary": Summary.load(out / "summary.json"), "prompts": prompts,
                       "best": best, "stdout": stdout}  # fmt: skip
    yield found


def ledger_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's rollout ledger, read as the raw JSON lines it wrote."""
    path = run["out"] / "runs" / run["summary"].run_id / "rollouts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_demonstrations_reach_a_val_score_plain_apo_cannot(runs: dict[str, dict[str, Any]]) -> None:
    plain, demos = runs["plain"]["summary"], runs["demos"]["summary"]
    assert plain.seed_val_score == plain.best_val_score == 0.0  # no instruction makes this agent right
    assert demos.seed_val_score == 0.0
    assert demos.best_val_score is not None and demos.best_val_score > 0.25
    best: PromptRecord = runs["demos"]["best"]
    assert best.demos and best.change in ("examples", "both")


def test_the_held_out_test_confirms_it(runs: dict[str, dict[str, Any]]) -> None:
    plain, demos = runs["plain"]["summary"], runs["demos"]["summary"]
    assert plain.best_test_score == plain.seed_test_score == 0.0
    assert demos.best_test_score > demos.seed_test_score == 0.0
    # The seed is never right, so every problem the best got right is a win, and there is no loss.
    assert demos.test_problems.losses == []
    assert len(demos.test_problems.wins) == round(demos.best_test_score * demos.best_test.n)
    assert demos.test_problems.wins and set(demos.test_problems.wins) <= {t["id"] for t in SPLITS.test}


def test_same_rollout_budget_fewer_optimizer_calls(runs: dict[str, dict[str, Any]]) -> None:
    plans = {name: expected_rollouts(Settings(_env_file=None, demos=d), SPLITS)  # type: ignore[call-arg]
             for name, d in (("plain", 0), ("demos", DEFAULTS.demos))}  # fmt: skip
    assert plans["plain"]["training_rollouts"] == plans["demos"]["training_rollouts"]
    for name in ("plain", "demos"):
        summary: Summary = runs[name]["summary"]
        assert summary.expected_training_rollouts_max == plans[name]["training_rollouts"]
        assert 0 < summary.rollouts <= summary.expected_training_rollouts_max
        calls = sum(role["calls"] for role in summary.tokens.optimizer.values())
        assert calls == plans[name]["optimizer_llm_calls"]


def test_no_val_or_test_question_appears_in_any_candidate(runs: dict[str, dict[str, Any]]) -> None:
    train_ids = {t["id"] for t in SPLITS.train}
    for name in ("plain", "demos"):
        prompts: list[PromptRecord] = runs[name]["prompts"]
        assert prompts
        for prompt in prompts:
            assert {d.problem_id for d in prompt.demos} <= train_ids
            leaked = [t["id"] for t in HELD_OUT if t["question"] in prompt.template]
            assert leaked == [], f"{name} {prompt.label} shows held-out problems {leaked}"


def test_lineage_says_what_each_candidate_changed(runs: dict[str, dict[str, Any]]) -> None:
    plain: list[PromptRecord] = runs["plain"]["prompts"]
    demos: list[PromptRecord] = runs["demos"]["prompts"]
    assert {p.change for p in plain} == {"seed", "instruction"}
    by_id = {p.id: p for p in demos}
    for prompt in demos:
        assert prompt.template == Prompt(prompt.instruction, prompt.demos).render()
        if prompt.parent_id is None:
            assert prompt.change == "seed"
            continue
        parent = by_id[prompt.parent_id]
        assert (prompt.instruction != parent.instruction, prompt.demos != parent.demos) == {
            "instruction": (True, False), "examples": (False, True), "both": (True, True)
        }[str(prompt.change)] or prompt.status == "rejected"  # fmt: skip
    changes = runs["demos"]["summary"].demonstrations.candidates_by_change
    assert changes.get("instruction", 0) > 0 and changes.get("examples", 0) > 0
    assert sum(changes.values()) == runs["demos"]["summary"].candidates


def test_rewarded_train_rollouts_become_bootstrapped_demonstrations(runs: dict[str, dict[str, Any]]) -> None:
    summary: Summary = runs["demos"]["summary"]
    assert summary.demonstrations is not None
    rows = ledger_rows(runs["demos"])
    rewarded = {r["task_id"] for r in rows if r["mode"] == "train" and r["status"] == "ok" and r["reward"] == 1.0}
    assert rewarded, "no train rollout earned reward 1: round 2's parents had no examples"
    # Every one of them was read back from its spans into the pool; the gold ones are the train split's.
    assert summary.demonstrations.pool == {"bootstrapped": len(rewarded), "gold": len(SPLITS.train)}


def test_best_prompt_files_and_summary_list_its_demonstrations(runs: dict[str, dict[str, Any]]) -> None:
    out: Path = runs["demos"]["out"]
    best: PromptRecord = runs["demos"]["best"]
    meta = json.loads((out / "best_prompt.json").read_text())
    assert (out / "best_prompt.txt").read_text() == best.template
    assert meta["instruction"] == best.instruction
    assert meta["demonstrations"] == [d.to_json() for d in best.demos]
    summary: Summary = runs["demos"]["summary"]
    assert summary.demonstrations is not None
    assert [(d.problem_id, d.source) for d in summary.demonstrations.best] == [
        (d.problem_id, d.source) for d in best.demos
    ]
    assert "best's demonstrations" in runs["demos"]["stdout"]
    assert runs["plain"]["summary"].demonstrations is None


def test_prompts_show_prints_instruction_and_demonstrations_apart(runs: dict[str, dict[str, Any]]) -> None:
    out: Path = runs["demos"]["out"]
    best: PromptRecord = runs["demos"]["best"]
    shown = subprocess.run(
        [sys.executable, "-m", "trainer", "prompts", "show", str(best.id), "--output", str(out)],
        env=trainer_env(), capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert f"instruction, then {len(best.demos)} demonstrations" in shown
    for i, demo in enumerate(best.demos, 1):
        assert f"--- demonstration {i}: problem {demo.problem_id} ({demo.source})" in shown
        assert f"Question: {demo.question}\nAnswer: {demo.answer}" in shown


def test_examples_branches_run_train_batches_only_while_the_pool_is_short(runs: dict[str, dict[str, Any]]) -> None:
    branches = DEFAULTS.iterations * DEFAULTS.beam_width * DEFAULTS.branch_factor
    train: dict[str, int] = {}
    for name in ("plain", "demos", "gold"):
        summary: Summary = runs[name]["summary"]
        train[name] = sum(1 for r in ledger_rows(runs[name]) if r["mode"] == "train")
        skipped = summary.demonstrations.train_batches_skipped if summary.demonstrations else 0
        assert train[name] == (branches - skipped) * DEFAULTS.gradient_batch_size, name
    # With DEMO_SOURCE=gold the pool holds the whole train split from the start, so no examples
    # branch (2 of each round's 4) needs its parent's train rollouts; the edits still get theirs.
    gold = runs["gold"]["summary"].demonstrations
    assert gold is not None and gold.pool == {"gold": len(SPLITS.train)}
    assert gold.train_batches_skipped == DEFAULTS.iterations * 2
    assert train["gold"] == train["plain"] // 2
    # With bootstrapped demonstrations allowed, a batch runs while the pool holds fewer than DEMOS of
    # them: here the seed is never right, so round 1's pool gets none and every branch runs its batch.
    assert runs["demos"]["summary"].demonstrations.train_batches_skipped < DEFAULTS.iterations * 2
