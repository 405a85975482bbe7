"""Honest numbers for small evaluation sets.

Scores on a few dozen problems are noisy (measured: a "gain" of 0.15 -> 0.25 on 20 val problems
became 5/30 -> 3/30 on test). So every score carries a 95% Wilson interval, and best-vs-seed is a
paired comparison on the same test problems: an exact McNemar test on the problems where exactly
one of the two prompts was right. Only a p-value below 0.05 counts as a real difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Score:
    correct: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.2f}, {self.high:.2f}] ({self.correct}/{self.n})"


def wilson(correct: int, n: int, z: float = Z_95) -> Score:
    """Wilson score interval: well-behaved at 0/n and n/n, unlike the normal approximation."""
    if n <= 0:
        return Score(0, 0, 0.0, 1.0)
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} outside 0..{n}")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Rounding can leave the bound a hair inside the estimate at 0/n and n/n: pin them.
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return Score(correct, n, low, high)


@dataclass(frozen=True)
class PairedComparison:
    n: int
    both_right: int
    only_seed: int
    only_best: int
    both_wrong: int
    p_value: float

    @property
    def difference(self) -> float:
        return (self.only_best - self.only_seed) / self.n if self.n else 0.0

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE

    def verdict(self) -> str:
        if self.only_best == self.only_seed:
            return "no difference between best and seed on the test split"
        direction = "better" if self.only_best > self.only_seed else "worse"
        if not self.significant:
            return (
                f"best looks {direction} than seed by {abs(self.difference):.3f}, but that is within noise "
                f"(paired McNemar p={self.p_value:.2f}, {self.only_best} vs {self.only_seed} discordant problems)"
            )
        return (
            f"best is {direction} than seed by {abs(self.difference):.3f} "
            f"(paired McNemar p={self.p_value:.3f}, significant at {SIGNIFICANCE})"
        )


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test on the discordant pairs."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / 2**n  # exact int division: no overflow
    return min(1.0, 2 * tail)


def paired(seed_correct: Sequence[bool], best_correct: Sequence[bool]) -> PairedComparison:
    if len(seed_correct) != len(best_correct):
        raise ValueError("paired comparison needs results on the same problems")
    both = sum(1 for s, b in zip(seed_correct, best_correct, strict=True) if s and b)
    only_seed = sum(1 for s, b in zip(seed_correct, best_correct, strict=True) if s and not b)
    only_best = sum(1 for s, b in zip(seed_correct, best_correct, strict=True) if b and not s)
    n = len(seed_correct)
    return PairedComparison(
        n=n,
        both_right=both,
        only_seed=only_seed,
        only_best=only_best,
        both_wrong=n - both - only_seed - only_best,
        p_value=mcnemar_exact(only_seed, only_best),
    )
