"""The live display's seed score is the seed's pooled val score, the number every other view shows."""

from __future__ import annotations

import time

from trainer.agent.prompt import Prompt
from trainer.apo.scoring import ValScore
from trainer.training.progress import Progress, describe


def test_the_seed_score_follows_its_pool_not_its_first_batch() -> None:
    progress = Progress()
    progress.prompt_created("v0", Prompt("Solve {question}"), parent=None, round_number=0, change="seed")
    progress.prompt_scored("v0", round_number=0, batch=ValScore(0.5, 4), current=ValScore(0.5, 4), first=True)
    progress.prompt_created("v1", Prompt("Solve {question} well"), parent="v0", round_number=1, change="instruction")
    progress.prompt_scored("v1", round_number=1, batch=ValScore(1.0, 2), current=ValScore(1.0, 2), first=True)
    assert progress.snapshot().seed_score == 0.5  # another prompt's score never moves it
    progress.prompt_scored("v0", round_number=1, batch=ValScore(0.0, 2), current=ValScore(2 / 6, 6), first=False)
    state = progress.snapshot()
    assert (state.seed_label, state.seed_score, state.candidates) == ("v0", 2 / 6, 1)
    assert "seed 0.333" in describe(state, 10, time.monotonic())
