"""Tests for trainer.apo.demos and trainer.agent.prompt: the pool, the draws, the combination, rendering."""

from __future__ import annotations

import random
from typing import Any

import pytest

from trainer.agent.prompt import EXAMPLES_HEADING, Demo, Prompt, change_of
from trainer.agent.template import check_template, render_prompt
from trainer.apo.demos import DemoPool, ExampleSearch, gold_demos
from trainer.apo.guard import GuardLimits, rejection_reason
from trainer.apo.span_reads import compact_span, demo_from_result
from trainer.task import Problem
from trainer.telemetry.spans import ROLLOUT_SPAN_NAME


def problem(i: int, solution: str | None = None) -> Problem:
    task = Problem(id=f"p{i}", question=f"What is {i} + {i}?", answer=str(2 * i))
    if solution is not None:
        task["solution"] = solution
    return task


TRAIN = [problem(i, f"{i} + {i} = {2 * i}. The answer is {2 * i}.") for i in range(6)]
HELD_OUT = [problem(i) for i in range(100, 104)]


def demo(i: int, source: str = "gold") -> Demo:
    return Demo(f"p{i}", f"What is {i} + {i}?", f"The answer is {2 * i}.", source)  # type: ignore[arg-type]


# -- prompt ----------------------------------------------------------------------------------------


def test_a_prompt_without_demonstrations_renders_as_its_instruction() -> None:
    assert Prompt("Solve {question}.").render() == "Solve {question}."


def test_demonstrations_render_as_literal_text_after_the_instruction() -> None:
    tricky = Demo("x", "What is {question} in {braces}?", "Say {{4}}. The answer is 4.", "bootstrapped")
    prompt = Prompt("Solve it.", (demo(1), tricky))
    rendered = prompt.render()
    assert rendered.startswith(f"Solve it.\n\n{EXAMPLES_HEADING}\n\nQuestion: What is 1 + 1?\nAnswer: The answer is 2.")
    check_template(rendered)  # the braces of a demonstration are no placeholders
    assert "Question: What is {question} in {braces}?\nAnswer: Say {{4}}." in render_prompt(rendered, {"question": "Q"})


def test_change_of_names_what_differs_from_the_parent() -> None:
    parent = Prompt("Solve.", (demo(1),))
    assert change_of(parent, None) == "seed"
    assert change_of(Prompt("Solve better.", (demo(1),)), parent) == "instruction"
    assert change_of(Prompt("Solve.", (demo(2),)), parent) == "examples"
    assert change_of(Prompt("Solve  better.", (demo(2),)), parent) == "both"
    assert change_of(Prompt(" Solve. ", (demo(1),)), parent) == "instruction"  # whitespace is no change of meaning
    # ... but a reorder of the same examples is a change of examples
    assert change_of(Prompt("Solve.", (demo(2), demo(1))), Prompt("Solve.", (demo(1), demo(2)))) == "examples"


def test_demo_json_round_trip_and_bad_input() -> None:
    assert Demo.from_json(demo(3).to_json()) == demo(3)
    with pytest.raises(ValueError, match="source"):
        Demo.from_json({**demo(3).to_json(), "source": "val"})
    with pytest.raises(ValueError, match="answer"):
        Demo.from_json({**demo(3).to_json(), "answer": ""})


# -- pool ------------------------------------------------------------------------------------------


def test_gold_demos_are_the_problems_solutions() -> None:
    assert [d.problem_id for d in gold_demos([*TRAIN, problem(50)])] == [t["id"] for t in TRAIN]
    assert {d.source for d in gold_demos(TRAIN)} == {"gold"}


@pytest.mark.parametrize(("source", "gold"), [("both", 6), ("gold", 6), ("bootstrapped", 0)])
def test_the_pool_holds_only_the_allowed_sources(source: Any, gold: int) -> None:
    pool = DemoPool.for_splits(source, TRAIN, HELD_OUT)
    assert pool.count("gold") == gold
    assert pool.add(demo(1, "bootstrapped")) is (source != "gold")
    assert pool.add(demo(1, "bootstrapped")) is False  # one per problem and source


def test_val_and_test_questions_never_enter_the_pool() -> None:
    pool = DemoPool.for_splits("both", [*TRAIN, problem(100, "leaked")], HELD_OUT)
    assert "p100" not in {d.problem_id for d in pool.demos()}
    assert pool.add(Demo("other-id", "  what IS 101 +  101? ", "The answer is 202.", "bootstrapped")) is False
    assert pool.refused == 2


def test_draws_are_distinct_problems_and_avoid_sets_already_tried() -> None:
    pool = DemoPool.for_splits("gold", TRAIN, HELD_OUT)
    rng = random.Random(1)
    first = pool.draw(3, rng)
    assert len({d.problem_id for d in first}) == 3
    tried = [tuple(d.problem_id for d in first)]
    for _ in range(10):
        again = pool.draw(3, rng, avoid=tried)
        assert tuple(sorted(d.problem_id for d in again)) not in {tuple(sorted(t)) for t in tried}
        tried.append(tuple(d.problem_id for d in again))
    assert len(pool.draw(10, rng)) == 6  # a small pool gives what it has
    assert DemoPool("both", []).draw(3, rng) == ()


def test_example_search_draws_for_a_parent_and_combines_the_best() -> None:
    search = ExampleSearch(DemoPool.for_splits("gold", TRAIN, HELD_OUT), k=2, seed=7)
    parent = Prompt("Solve.")
    drawn = search.examples_for(parent)
    assert drawn is not None and drawn.instruction == "Solve." and len(drawn.demos) == 2
    # Best first: an instruction without examples, then one with; the combination pairs them.
    ranked = [Prompt("Best instruction."), Prompt("Solve.", drawn.demos)]
    combined = search.combination(ranked, seen=[p.render() for p in ranked])
    assert combined == Prompt("Best instruction.", drawn.demos)
    assert search.combination(ranked, seen=[p.render() for p in [*ranked, combined]]) is None
    assert search.combination([Prompt("No examples anywhere.")], seen=[]) is None
    assert ExampleSearch(DemoPool("both", []), k=2, seed=7).examples_for(parent) is None


def test_an_examples_branch_skips_its_train_batch_only_when_the_pool_can_fill_it() -> None:
    parent = Prompt("Solve.")
    # 4 branches in round 1: two instruction edits, then two example draws (trainer.apo.plan).
    gold = ExampleSearch(DemoPool.for_splits("gold", TRAIN, HELD_OUT), k=2, seed=7)
    assert [gold.skips_train_batch(4, 1, i, parent) for i in range(4)] == [False, False, True, True]
    assert gold.train_batches_skipped == 2
    # Bootstrapped demonstrations come only from train rollouts: the batch runs until the pool holds DEMOS of them.
    both = ExampleSearch(DemoPool.for_splits("both", TRAIN, HELD_OUT), k=2, seed=7)
    assert not both.skips_train_batch(4, 1, 2, parent)
    both.pool.add(demo(1, "bootstrapped"))
    assert not both.skips_train_batch(4, 1, 2, parent)
    both.pool.add(demo(2, "bootstrapped"))
    assert both.skips_train_batch(4, 1, 2, parent)
    assert both.train_batches_skipped == 1
    # ... and when every set of DEMOS problems was already tried (or is the parent's), it runs again.
    small = ExampleSearch(DemoPool.for_splits("gold", TRAIN[:3], HELD_OUT), k=2, seed=7)
    tried: set[tuple[str, ...]] = set()
    for _ in range(2):
        drawn = small.examples_for(parent)
        assert drawn is not None
        tried.add(tuple(sorted(drawn.demo_ids)))
    assert len(tried) == 2 and small.skips_train_batch(4, 1, 2, parent)  # 3 sets of 2 problems, 2 tried
    (last,) = {("p0", "p1"), ("p0", "p2"), ("p1", "p2")} - tried
    by_id = {d.problem_id: d for d in gold_demos(TRAIN[:3])}
    assert not small.skips_train_batch(4, 1, 2, Prompt("Solve.", tuple(by_id[i] for i in last)))


# -- bootstrapped from spans -----------------------------------------------------------------------


def rollout_result(reward: float | None, mode: str = "train", **attributes: Any) -> dict[str, Any]:
    root = {
        "name": ROLLOUT_SPAN_NAME,
        "attributes": {
            "trainer.task_id": "p3",
            "trainer.mode": mode,
            "gen_ai.prompt.0.content": "the system prompt",
            "gen_ai.prompt.1.content": "What is 3 + 3?",
            "gen_ai.completion.0.content": " 3 + 3 = 6. The answer is 6. ",
            **attributes,
        },
        "status": {"status_code": "OK"},
    }
    return {"status": "succeeded", "final_reward": reward, "spans": [root], "messages": []}


def test_a_rewarded_train_rollout_is_a_bootstrapped_demonstration() -> None:
    expected = Demo("p3", "What is 3 + 3?", "3 + 3 = 6. The answer is 6.", "bootstrapped")
    result = rollout_result(1.0)
    assert demo_from_result(result) == expected
    compacted = {**result, "spans": [compact_span(s) for s in result["spans"]]}  # as APO keeps them
    assert demo_from_result(compacted) == expected


@pytest.mark.parametrize(
    "result",
    [
        rollout_result(0.0),
        rollout_result(None),
        rollout_result(1.0, mode="val"),  # a val rollout's question must never become an example
        rollout_result(1.0, **{"gen_ai.completion.0.content": "  "}),
        {**rollout_result(1.0), "spans": []},  # traced without the conversation (TRACING=off)
        {**rollout_result(1.0), "status": "failed"},
    ],
)
def test_other_rollouts_give_none(result: dict[str, Any]) -> None:
    assert demo_from_result(result) is None


def test_the_pool_harvests_only_rewarded_train_rollouts() -> None:
    pool = DemoPool("bootstrapped", ["What is 100 + 100?"])
    assert pool.harvest([rollout_result(1.0), rollout_result(0.0), rollout_result(1.0, mode="val")]) == 1
    assert pool.harvest([rollout_result(1.0)]) == 0  # the same problem again
    assert [d.problem_id for d in pool.demos()] == ["p3"]


# -- the guard counts demonstrations -----------------------------------------------------------------


def test_the_guard_counts_demonstrations_towards_the_absolute_limit() -> None:
    limits = GuardLimits(max_chars=300, max_growth=2.0, growth_floor=50)
    parent = Prompt("Solve the problem.")
    long_demo = Demo("p1", "Q" * 150, "A" * 150, "gold")
    reason = rejection_reason(Prompt("Solve the problem.", (long_demo,)), parent=parent, seen=[], limits=limits)
    assert reason is not None and reason.startswith("too long") and "1 demonstrations" in reason
    # Growth is the optimizer's failure: measured on the instruction, not on added examples.
    short = Demo("p1", "Q" * 40, "A" * 40, "gold")
    assert rejection_reason(Prompt("Solve the problem.", (short,)), parent=parent, seen=[], limits=limits) is None
    grown = Prompt("Solve the problem. " * 4, (short,))
    grown_reason = rejection_reason(grown, parent=parent, seen=[], limits=limits)
    assert grown_reason is not None and grown_reason.startswith("too long: instruction")
    same = Prompt("Solve the problem.", (short,))
    assert rejection_reason(same, parent=parent, seen=[same.render()], limits=limits) == "duplicate"
