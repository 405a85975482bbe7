"""Stopping a new candidate's val batch once it can no longer reach the beam.

APO scores each round's prompts one after the other on the same val batch and keeps the
``beam_width`` best. Its sort is stable and the prompts come in order, so a prompt scoring exactly
what ``beam_width`` earlier prompts scored ranks after all of them. Once a new candidate's best
possible score (every rollout still to come answered with the highest reward) is no higher than
the ``beam_width``-th best score of the prompts scored before it, no outcome of its remaining
rollouts can put it into the beam: those rollouts are cancelled before a runner takes them.

Exact, not a statistical bet: the beam APO selects is the one it would have selected without the
cut. The candidate's score is still a score, over the rollouts it had (n says how many).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# Scores are means of a few rewards: anything this close to the bar is a tie.
TIE = 1e-9


@dataclass
class BeamCut:
    """The scores of this round's prompts so far, and the bar a new candidate must clear."""

    beam_width: int
    max_reward: float = 1.0
    scores: list[float] = field(default_factory=list)

    def bar(self) -> float | None:
        """The ``beam_width``-th best score so far; None while fewer prompts were scored."""
        if len(self.scores) < self.beam_width:
            return None
        return sorted(self.scores, reverse=True)[self.beam_width - 1]

    def hopeless(self, rewards: Sequence[float], remaining: int) -> bool:
        """True when ``rewards`` so far plus ``remaining`` rollouts cannot beat the bar."""
        bar = self.bar()
        n = len(rewards) + remaining
        if bar is None or n == 0:
            return False
        best_case = (sum(rewards) + remaining * self.max_reward) / n
        return best_case <= bar + TIE
