"""Tests for trainer.apo.plan.expected_rollouts: the cost of a training, known before it starts.

The hand-computed cases follow APO 0.3.0's loop (agentlightning/algorithm/apo/apo.py ``run``): the
seed on the full val set; then per round ``beam_width`` parents (replicated while the beam is
smaller) x ``branch_factor`` edits, each after a train batch; the beam plus every candidate on one
val batch; the beam leader on the full val set. The property test checks a closed form derived
independently of the implementation's loop: after round 1 the beam is always full (it keeps
``min(beam_width, 1 + beam_width * branch_factor)`` = ``beam_width`` prompts).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.apo.plan import branch_kinds, expected_rollouts
from trainer.config import ConfigError, Settings
from trainer.data.splits import Splits
from trainer.task import Problem


def problems(prefix: str, count: int) -> list[Problem]:
    return [Problem(id=f"{prefix}-{i}", question=f"What is {i} + 1?", answer=str(i + 1)) for i in range(count)]


def splits(train: int = 8, val: int = 4, test: int = 3) -> Splits:
    return Splits(train=problems("train", train), val=problems("val", val), test=problems("test", test))


def make_settings(
    *,
    algorithm: str = "apo",
    iterations: int = 1,
    beam_width: int = 2,
    branch_factor: int = 2,
    gradient_batch_size: int = 2,
    val_batch_size: int = 2,
    demos: int = 0,
) -> Settings:
    # Every field the plan reads is given, so neither the environment nor a .env file can change it.
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        algorithm=algorithm,  # type: ignore[arg-type]
        iterations=iterations,
        beam_width=beam_width,
        branch_factor=branch_factor,
        gradient_batch_size=gradient_batch_size,
        val_batch_size=val_batch_size,
        demos=demos,
    )


COST = ("training_rollouts", "test_rollouts", "agent_llm_calls", "optimizer_llm_calls")


def cost(plan: dict[str, int]) -> dict[str, int]:
    return {key: plan[key] for key in COST}


def test_baseline_is_the_seed_on_val_and_the_test_split_twice() -> None:
    # iterations is ignored: a baseline runs no rounds whatever it says.
    plan = expected_rollouts(make_settings(algorithm="baseline", iterations=5), splits(val=4, test=3))
    assert cost(plan) == {"training_rollouts": 4, "test_rollouts": 6, "agent_llm_calls": 10, "optimizer_llm_calls": 0}


def test_one_round() -> None:
    # seed 4 + train 2x2 batches of 2 (8) + (beam 1 + 4 candidates) x val batch 2 (10) + leader 4 = 26
    plan = expected_rollouts(make_settings(iterations=1), splits(val=4, test=3))
    assert cost(plan) == {"training_rollouts": 26, "test_rollouts": 6, "agent_llm_calls": 32, "optimizer_llm_calls": 8}


def test_two_rounds_the_beam_grows_to_its_width() -> None:
    # round 2 scores the 2 kept prompts next to the 4 new ones: 8 + (2 + 4) x 2 + 4 = 24 on top of 26
    plan = expected_rollouts(make_settings(iterations=2), splits(val=4, test=3))
    assert cost(plan) == {"training_rollouts": 50, "test_rollouts": 6, "agent_llm_calls": 56, "optimizer_llm_calls": 16}


def test_narrow_beam_two_rounds() -> None:
    # beam 1 x 2: each round 1 x 2 x 2 train + (1 + 2) x 2 val + 4 leader = 14
    plan = expected_rollouts(make_settings(iterations=2, beam_width=1), splits(val=4, test=5))
    assert cost(plan) == {"training_rollouts": 32, "test_rollouts": 10, "agent_llm_calls": 42, "optimizer_llm_calls": 8}


def test_wide_beam_single_branch_three_rounds() -> None:
    # beam 3 x 1, batches of 1, val 2: round 1 = 3 + (1 + 3) + 2 = 9, rounds 2-3 = 3 + (3 + 3) + 2 = 11
    plan = expected_rollouts(
        make_settings(iterations=3, beam_width=3, branch_factor=1, gradient_batch_size=1, val_batch_size=1),
        splits(val=2, test=1),
    )
    assert cost(plan) == {"training_rollouts": 33, "test_rollouts": 2, "agent_llm_calls": 35, "optimizer_llm_calls": 18}


def test_optimizer_calls_are_a_critique_and_an_edit_per_branch() -> None:
    plan = expected_rollouts(make_settings(iterations=4, beam_width=3, branch_factor=5), splits())
    assert plan["optimizer_llm_calls"] == 4 * 3 * 5 * 2


def test_train_split_size_does_not_matter() -> None:
    # Train batches are drawn from the split; its size never changes how many are drawn.
    config = make_settings(iterations=2)
    assert expected_rollouts(config, splits(train=2)) == expected_rollouts(config, splits(train=50))


def test_demonstrations_spend_the_plain_runs_rollouts_and_fewer_optimizer_calls() -> None:
    plain = expected_rollouts(make_settings(iterations=2), splits(val=4, test=3))
    demos = expected_rollouts(make_settings(iterations=2, demos=3), splits(val=4, test=3))
    assert demos["training_rollouts"] == plain["training_rollouts"] == 50
    # 2 rounds x 4 branches: 2 edits each round, round 1 draws 2 sets, round 2 draws 1 and combines 1
    assert (demos["instruction_edits"], demos["example_draws"], demos["example_combinations"]) == (4, 3, 1)
    assert demos["optimizer_llm_calls"] == 2 * 4 < plain["optimizer_llm_calls"] == 16
    assert (plain["instruction_edits"], plain["example_draws"], plain["example_combinations"]) == (8, 0, 0)


def test_branch_kinds() -> None:
    assert branch_kinds(4, 0, 1) == ["instruction"] * 4
    assert branch_kinds(4, 2, 1) == ["instruction", "instruction", "examples", "examples"]
    assert branch_kinds(4, 2, 3) == ["instruction", "instruction", "examples", "combine"]
    assert branch_kinds(3, 2, 2) == ["instruction", "instruction", "examples"]  # one example branch draws
    # One branch alternates, examples first: the seed has none.
    assert [branch_kinds(1, 2, r) for r in (1, 2, 3)] == [["examples"], ["instruction"], ["examples"]]


def closed_form(rounds: int, bw: int, bf: int, g: int, v: int, val: int) -> int:
    beams_scored = 0 if rounds == 0 else 1 + (rounds - 1) * bw  # beam sizes at each round's val batch
    return val * (rounds + 1) + rounds * bw * bf * (g + v) + v * beams_scored


@settings(max_examples=200, deadline=None)
@given(
    baseline=st.booleans(),
    iterations=st.integers(1, 12),
    bw=st.integers(1, 8),
    bf=st.integers(1, 8),
    g=st.integers(1, 16),
    v=st.integers(1, 16),
    extra_val=st.integers(0, 20),
    test=st.integers(1, 30),
)
def test_plan_matches_closed_form(
    baseline: bool, iterations: int, bw: int, bf: int, g: int, v: int, extra_val: int, test: int
) -> None:
    val = v + extra_val  # a training refuses val batches larger than the split
    config = make_settings(
        algorithm="baseline" if baseline else "apo",
        iterations=iterations,
        beam_width=bw,
        branch_factor=bf,
        gradient_batch_size=g,
        val_batch_size=v,
    )
    rounds = 0 if baseline else iterations
    plan = expected_rollouts(config, splits(train=g, val=val, test=test))
    training = closed_form(rounds, bw, bf, g, v, val)
    assert cost(plan) == {
        "training_rollouts": training,
        "test_rollouts": 2 * test,
        "agent_llm_calls": training + 2 * test,
        "optimizer_llm_calls": 2 * rounds * bw * bf,
    }


def test_without_instruction_edits_every_branch_tries_examples() -> None:
    assert branch_kinds(4, 2, 1, edits=False) == ["examples"] * 4
    assert branch_kinds(4, 2, 2, edits=False) == ["examples"] * 3 + ["combine"]
    plan = expected_rollouts(
        Settings(_env_file=None, iterations=2, demos=3, instruction_edits=False),  # type: ignore[call-arg]
        splits(val=16, test=3),
    )
    assert (plan["instruction_edits"], plan["optimizer_llm_calls"]) == (0, 0)


def test_no_edits_and_no_demonstrations_is_refused() -> None:
    with pytest.raises(ConfigError, match="INSTRUCTION_EDITS false with DEMOS"):
        Settings(_env_file=None, demos=0, instruction_edits=False).check_search()  # type: ignore[call-arg]
    Settings(_env_file=None, demos=0, instruction_edits=False, algorithm="baseline").check_search()  # type: ignore[call-arg]
