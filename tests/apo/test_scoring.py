"""The scoring rules over APO's rollout results: data points, unscored batches, pooling, the watch."""

from __future__ import annotations

from typing import Any

import pytest

from trainer.apo.scoring import BatchTally, EndpointDown, EndpointWatch, ValScore, fault_of, tally
from trainer.telemetry.spans import ROLLOUT_SPAN_NAME


def answered(reward: float) -> dict[str, Any]:
    return {"status": "succeeded", "final_reward": reward, "spans": [], "messages": []}


def faulted(reason: str = "http://llm:8000/v1: ConnectError") -> dict[str, Any]:
    root = {"name": ROLLOUT_SPAN_NAME, "attributes": {"trainer.status": "endpoint_error"}, "status": "ERROR"}
    return {"status": "succeeded", "final_reward": None, "spans": [{**root, "error": f"endpoint_error: {reason}"}]}


def test_a_rewarded_rollout_is_a_data_point_and_a_rewardless_one_says_why() -> None:
    assert fault_of(answered(0.0)) is None
    assert fault_of(faulted("boom")) == "endpoint_error: boom"
    raw = {"status": "succeeded", "final_reward": None, "spans": [
        {"name": ROLLOUT_SPAN_NAME, "status": {"status_code": "ERROR", "description": "timeout: slow"}}
    ]}  # fmt: skip
    assert fault_of(raw) == "timeout: slow"
    assert fault_of({"status": "failed", "final_reward": None, "spans": []}) == "rollout failed without a reward"


def test_a_batch_scores_over_its_data_points_only() -> None:
    batch = tally([answered(1.0), faulted(), answered(0.0), answered(1.0)], planned=4)
    assert batch.score == ValScore(2 / 3, 3)
    assert len(batch.faults) == 1 and batch.unfinished == 0


@pytest.mark.parametrize(("answers", "faults", "planned"), [(0, 0, 16), (3, 0, 16), (7, 9, 16), (1, 2, 4)])
def test_fewer_than_half_answered_is_unscored_with_why(answers: int, faults: int, planned: int) -> None:
    batch = tally([answered(1.0)] * answers + [faulted()] * faults, planned=planned)
    assert batch.score is None
    why = batch.why_unscored()
    assert f"{answers} of {planned} rollouts gave an answer" in why
    if planned - answers - faults:
        assert f"{planned - answers - faults} did not finish within ROLLOUT_BATCH_TIMEOUT" in why
    if faults:
        assert "ConnectError" in why


def test_half_answered_is_a_score() -> None:
    assert tally([answered(1.0)] * 8, planned=16).score == ValScore(1.0, 8)


def test_pooling_is_correct_over_total() -> None:
    pooled = ValScore(4 / 16, 16).pooled_with(ValScore(1 / 16, 16)).pooled_with(ValScore(0.5, 4))
    assert pooled.n == 36 and pooled.value == pytest.approx(7 / 36)
    interval = pooled.interval()
    assert (interval.correct, interval.n) == (7, 36) and interval.low < pooled.value < interval.high


def test_the_watch_stops_after_the_limit_in_a_row_and_a_data_point_resets_it() -> None:
    watch = EndpointWatch(limit=3)
    watch.observe([faulted(), faulted(), answered(0.0), faulted(), faulted()])
    assert watch.in_a_row == 2
    with pytest.raises(EndpointDown, match=r"3 rollouts in a row .*MAX_ENDPOINT_FAILURES=3.*http://llm:8000/v1"):
        watch.observe([faulted()])


def test_an_empty_tally() -> None:
    assert BatchTally(planned=2).score is None
