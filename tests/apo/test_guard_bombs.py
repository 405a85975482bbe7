"""The tracked APO against template bombs: a candidate no rollout could render is a rejection.

An edit model may write ``{question:>1000000000000000}``: the guard's template check used to format
it and raise MemoryError, which ended the training. Such a candidate must be recorded as rejected
(with the reason), like any other hopeless candidate.
"""

from __future__ import annotations

import agentlightning as agl

from trainer.apo.algorithm import TrackedAPO
from trainer.apo.guard import GuardLimits
from trainer.apo.observer import APOObserver
from trainer.math_task import SEED_PROMPT

GUARD = GuardLimits(max_chars=4000, max_growth=4.0)
BOMBS = [
    "Solve: {question:>1000000000000000}",
    "Solve: {question:>1000000000}",
    "Solve: {question.__class__.__init__.__globals__}",
    "Solve: {question!r}",
]


class Rejections(APOObserver):
    def __init__(self) -> None:
        self.rejected: list[tuple[str, str]] = []

    def prompt_rejected(self, label: str, reason: str, *, round_number: int) -> None:
        self.rejected.append((label, reason))


def test_bomb_candidates_are_rejected_not_raised() -> None:
    # Whether a rejected candidate stays out of the beam is test_tracked_apo's subject; here: no
    # candidate, however hostile, makes creating it raise, and each is rejected with its reason.
    observer = Rejections()
    algorithm = TrackedAPO(object(), observer=observer, guard=GUARD, run_id="r", beam_width=8, beam_rounds=1)
    seed = algorithm._create_versioned_prompt(agl.PromptTemplate(template=SEED_PROMPT, engine="f-string"))
    algorithm._parent = seed
    bombs = [algorithm._create_versioned_prompt(agl.PromptTemplate(template=t, engine="f-string")) for t in BOMBS]

    reasons = dict(observer.rejected)
    assert set(reasons) == {bomb.version for bomb in bombs}
    assert all(reason.startswith("unrenderable: ") for reason in reasons.values())
    assert "{question:>1000000000000000} at line 1, column 8" in reasons[bombs[0].version]
    assert "{question:>1000000000} at line 1, column 8" in reasons[bombs[1].version]
    assert "attribute access" in reasons[bombs[2].version]
    assert "conversion !r" in reasons[bombs[3].version]
    assert seed.version not in reasons
    assert all(bomb.version in algorithm._rejected for bomb in bombs)
