"""What a training will cost before it starts: APO's rollouts and LLM calls, from the settings.

With demonstrations (``DEMOS`` > 0) some of each round's branches draw a new demonstration set (or
pair the best instruction with the best set) instead of asking the optimizer for an edit, and
every candidate is scored on the same val batch. An examples branch skips its parent's train batch
once the pool can fill its set (trainer.apo.demos.ExampleSearch.skips_train_batch), which depends on
the rewards of the run's own train rollouts. The plan counts every batch, so its rollouts are an
upper bound: the plain APO run's with the same settings.
"""

from __future__ import annotations

from typing import Literal

from trainer.config import Settings
from trainer.data.splits import Splits

BranchKind = Literal["instruction", "examples", "combine"]


def branch_kinds(branches: int, demos: int, round_number: int, *, edits: bool = True) -> list[BranchKind]:
    """What each of a round's ``branches`` does, in APO's branch order (rounds count from 1).

    Half the branches (rounded down) try examples; from round 2 on, when two or more do, the last of
    them combines the best instruction with the best set found. A single branch alternates, examples
    first (the seed has none). Without ``edits`` (INSTRUCTION_EDITS=false) every branch tries examples.
    """
    if demos == 0:
        return ["instruction"] * branches
    examples = (branches // 2 if branches > 1 else round_number % 2) if edits else branches
    kinds: list[BranchKind] = ["instruction"] * (branches - examples)
    kinds += ["examples"] * examples
    if examples >= 2 and round_number >= 2:
        kinds[-1] = "combine"
    return kinds


def expected_rollouts(settings: Settings, splits: Splits) -> dict[str, int]:
    """Upper bound of rollouts and LLM calls APO will make (its cost formula), and the branches' split."""
    val = len(splits.val)
    rounds = 0 if settings.algorithm == "baseline" else settings.iterations
    bw, bf = settings.beam_width, settings.branch_factor
    total = val  # the seed's baseline on the full val set
    beam = 1
    kinds: list[BranchKind] = []
    for round_number in range(1, rounds + 1):
        total += bw * bf * settings.gradient_batch_size
        total += (beam + bw * bf) * settings.val_batch_size
        total += val  # the beam leader, rescored on the full val set
        beam = min(bw, beam + bw * bf)
        kinds += branch_kinds(bw * bf, settings.demos, round_number, edits=settings.instruction_edits)
    test = 2 * len(splits.test)
    return {
        "training_rollouts": total,
        "test_rollouts": test,
        "agent_llm_calls": total + test,
        "optimizer_llm_calls": 2 * kinds.count("instruction"),
        "instruction_edits": kinds.count("instruction"),
        "example_draws": kinds.count("examples"),
        "example_combinations": kinds.count("combine"),
    }
