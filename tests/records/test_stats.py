"""Tests for trainer.records.stats: Wilson intervals and the exact paired McNemar test."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.records.stats import SIGNIFICANCE, PairedComparison, Score, mcnemar_exact, paired, wilson

# -- Wilson interval -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [
        # Textbook 95% Wilson score intervals (e.g. statsmodels proportion_confint(method="wilson")).
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (1, 10, 0.0179, 0.4042),
        (0, 30, 0.0, 0.1135),
        (15, 20, 0.5313, 0.8881),
    ],
)
def test_wilson_known_values(correct: int, n: int, low: float, high: float) -> None:
    score = wilson(correct, n)
    assert score.low == pytest.approx(low, abs=1e-3)
    assert score.high == pytest.approx(high, abs=1e-3)
    assert (score.correct, score.n) == (correct, n)
    assert score.value == pytest.approx(correct / n)


def test_wilson_of_nothing_is_the_whole_range() -> None:
    score = wilson(0, 0)
    assert (score.low, score.high, score.value) == (0.0, 1.0, 0.0)


@pytest.mark.parametrize(("correct", "n"), [(11, 10), (-1, 10)])
def test_wilson_rejects_impossible_counts(correct: int, n: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        wilson(correct, n)


@given(n=st.integers(min_value=1, max_value=5000), data=st.data())
@settings(max_examples=300, deadline=None)
def test_wilson_contains_the_point_estimate_and_stays_in_unit_range(n: int, data: st.DataObject) -> None:
    correct = data.draw(st.integers(min_value=0, max_value=n))
    score = wilson(correct, n)
    p = correct / n
    assert 0.0 <= score.low <= score.high <= 1.0
    # Float rounding may leave the bound a hair off an exact 0/n or n/n (wilson(0, 1147).low is
    # 2e-19): contained up to 1e-12.
    assert score.low - 1e-12 <= p <= score.high + 1e-12
    assert score.low < score.high
    # Symmetric in successes and failures.
    mirror = wilson(n - correct, n)
    assert score.low == pytest.approx(1 - mirror.high, abs=1e-12)
    assert score.high == pytest.approx(1 - mirror.low, abs=1e-12)


@given(k=st.integers(min_value=0, max_value=20), scale=st.integers(min_value=2, max_value=50))
@settings(max_examples=100, deadline=None)
def test_wilson_narrows_with_more_data(k: int, scale: int) -> None:
    small = wilson(k, 20)
    big = wilson(k * scale, 20 * scale)
    assert big.high - big.low < small.high - small.low


def test_score_str_is_readable() -> None:
    assert str(wilson(5, 10)) == "0.500 [0.24, 0.76] (5/10)"
    assert isinstance(wilson(1, 2), Score)


# -- exact McNemar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("only_a", "only_b", "p"),
    [
        (0, 5, 0.0625),  # 2 / 2**5
        (5, 0, 0.0625),
        (3, 3, 1.0),
        (0, 0, 1.0),
        (1, 9, 22 / 1024),  # 2 * (1 + 10) / 2**10
        (2, 8, 112 / 1024),  # 2 * (1 + 10 + 45) / 2**10
        (0, 12, 2 / 4096),
        (4, 5, 1.0),
    ],
)
def test_mcnemar_known_values(only_a: int, only_b: int, p: float) -> None:
    assert mcnemar_exact(only_a, only_b) == pytest.approx(p, abs=1e-12)


def _two_sided_binomial(k: int, n: int) -> Fraction:
    """Independent oracle: P(outcomes no more likely than k) under Binomial(n, 1/2), exactly."""
    pmf = [Fraction(math.comb(n, i), 2**n) for i in range(n + 1)]
    return min(Fraction(1), sum((q for q in pmf if q <= pmf[k]), Fraction(0)))


@given(a=st.integers(min_value=0, max_value=60), b=st.integers(min_value=0, max_value=60))
@settings(max_examples=200, deadline=None)
def test_mcnemar_matches_the_exact_binomial_test(a: int, b: int) -> None:
    p = mcnemar_exact(a, b)
    assert 0.0 < p <= 1.0
    assert p == mcnemar_exact(b, a)
    if a + b:
        assert p == pytest.approx(float(_two_sided_binomial(a, a + b)), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("a", "b"), [(600, 600), (500, 700)])
def test_mcnemar_handles_large_test_splits(a: int, b: int) -> None:
    # A test split of a few thousand problems can have more than 1023 discordant pairs.
    p = mcnemar_exact(a, b)
    assert 0.0 <= p <= 1.0
    if a == b:
        assert p == 1.0
    else:
        assert p < SIGNIFICANCE


# -- paired comparison ---------------------------------------------------------------------------


def test_paired_counts() -> None:
    seed = [True, True, False, False, True, False, True]
    best = [True, False, True, False, False, True, True]
    result = paired(seed, best)
    assert (result.n, result.both_right, result.only_seed, result.only_best, result.both_wrong) == (7, 2, 2, 2, 1)
    assert result.p_value == 1.0
    assert result.difference == 0.0
    assert not result.significant


def test_paired_rejects_different_lengths() -> None:
    with pytest.raises(ValueError, match="same problems"):
        paired([True, False], [True])


def test_paired_on_nothing() -> None:
    result = paired([], [])
    assert (result.n, result.p_value, result.difference) == (0, 1.0, 0.0)
    assert "no difference" in result.verdict()


@given(pairs=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=80))
@settings(max_examples=150, deadline=None)
def test_paired_counts_add_up(pairs: list[tuple[bool, bool]]) -> None:
    seed = [s for s, _ in pairs]
    best = [b for _, b in pairs]
    result = paired(seed, best)
    assert result.both_right + result.only_seed + result.only_best + result.both_wrong == len(pairs)
    assert result.both_right + result.only_seed == sum(seed)
    assert result.both_right + result.only_best == sum(best)
    assert result.difference == pytest.approx((sum(best) - sum(seed)) / len(pairs) if pairs else 0.0)
    assert result.p_value == mcnemar_exact(result.only_seed, result.only_best)


# -- verdict -------------------------------------------------------------------------------------


def _comparison(only_seed: int, only_best: int, both_right: int = 5, both_wrong: int = 5) -> PairedComparison:
    seed = [True] * both_right + [True] * only_seed + [False] * only_best + [False] * both_wrong
    best = [True] * both_right + [False] * only_seed + [True] * only_best + [False] * both_wrong
    return paired(seed, best)


def test_verdict_within_noise() -> None:
    result = _comparison(only_seed=1, only_best=3)
    assert not result.significant
    text = result.verdict()
    assert "within noise" in text
    assert "better" in text
    assert "significant" not in text
    assert "3 vs 1" in text


def test_verdict_significant_gain() -> None:
    result = _comparison(only_seed=0, only_best=12)
    assert result.significant
    text = result.verdict()
    assert "significant" in text
    assert "better" in text
    assert "within noise" not in text
    assert f"{12 / 22:.3f}" in text  # the size of the gain


def test_verdict_significant_loss() -> None:
    text = _comparison(only_seed=12, only_best=0).verdict()
    assert "worse" in text
    assert "significant" in text


def test_verdict_no_difference() -> None:
    text = _comparison(only_seed=4, only_best=4).verdict()
    assert "no difference" in text


def test_significance_threshold_is_strict() -> None:
    # 0 vs 6 discordant: p = 2/64 = 0.03125 < 0.05; 0 vs 5: p = 0.0625 is not significant.
    assert _comparison(0, 6).significant
    assert not _comparison(0, 5).significant
