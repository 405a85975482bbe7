"""What a training will cost before it starts: APO's rollouts and LLM calls, from the settings."""

from __future__ import annotations

from trainer.config import Settings
from trainer.data.splits import Splits


def expected_rollouts(settings: Settings, splits: Splits) -> dict[str, int]:
    """Upper bound of rollouts and LLM calls APO will make (its cost formula)."""
    val = len(splits.val)
    rounds = 0 if settings.algorithm == "baseline" else settings.iterations
    bw, bf = settings.beam_width, settings.branch_factor
    total = val  # the seed's baseline on the full val set
    beam = 1
    for _ in range(rounds):
        total += bw * bf * settings.gradient_batch_size
        total += (beam + bw * bf) * settings.val_batch_size
        total += val  # the beam leader, rescored on the full val set
        beam = min(bw, beam + bw * bf)
    optimizer_calls = rounds * bw * bf * 2
    test = 2 * len(splits.test)
    return {
        "training_rollouts": total,
        "test_rollouts": test,
        "agent_llm_calls": total + test,
        "optimizer_llm_calls": optimizer_calls,
    }
