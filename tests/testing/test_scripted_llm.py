"""Tests for trainer.testing: the scripted OpenAI-compatible server and the LLM behaviours it plays.

The server is checked with the clients the trainer really uses (``openai.AsyncOpenAI``,
``probe_chat``, ``wait_healthy``), the optimizer behaviour with APO's own templates rendered the way
APO renders them, and once through APO's own critique-and-edit step. Timing checks are lower bounds
only: the cores are shared.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from tests.support.env import trainer_env
from trainer.agent.grader import grade
from trainer.apo.guard import GuardLimits, rejection_reason
from trainer.data.problems import generate_problems
from trainer.data.splits import load_splits
from trainer.serving.probes import probe_chat, wait_healthy
from trainer.testing import (
    CONTEXT_OVERFLOW,
    MAX_DELAY_S,
    NO_ANSWER,
    RATE_LIMITED,
    Reply,
    ScriptedLLM,
    ScriptedOptimizer,
    agent_when,
    call_kind,
    chat_completion,
    closed_port,
    count_tokens,
    dropping,
    extract_prompt,
    failing,
    is_probe,
    perfect_agent,
    prompt_contains,
    prompt_rewrites,
    route,
    wrong_agent,
)

TASKS = generate_problems(50, 3)
TEMPLATE = "You solve math word problems.\n\nQuestion: {question}\nEnd with: The answer is <number>."
CRITIQUE = "- End with one line 'The answer is N'.\n- Show one calculation per step."
EDITED = "You solve math word problems. Show one calculation per step. End with: The answer is <number>."


def chat(llm: ScriptedLLM, messages: list[dict[str, Any]], **extra: Any) -> Any:
    """One chat completion through the real openai client (no retries: every status is seen)."""

    async def main() -> Any:
        client = AsyncOpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=0, timeout=20)
        try:
            model = extra.pop("model", "m")
            return await client.chat.completions.create(model=model, messages=messages, **extra)  # type: ignore[arg-type]
        finally:
            await client.close()

    return asyncio.run(main())


def agent_request(question: str, system: str = "You solve math word problems.", model: str = "m") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}


def content(reply: Reply) -> str:
    assert reply.status == 200 and reply.body is None and reply.content is not None
    return reply.content


# -- the server ------------------------------------------------------------------------------------


def test_answers_like_openai_with_counted_usage() -> None:
    short = [{"role": "user", "content": "Hi."}]
    long = [{"role": "system", "content": "You solve math word problems."}, {"role": "user", "content": "What is 2+2?"}]
    with ScriptedLLM() as llm:
        first, second = chat(llm, short), chat(llm, long)
        assert [r["messages"] for r in llm.requests] == [short, long]
    assert first.choices[0].message.content == "The answer is 4."
    assert first.choices[0].finish_reason == "stop"
    assert first.id != second.id
    for completion, messages in ((first, short), (second, long)):
        usage = completion.usage
        assert usage is not None
        assert usage.prompt_tokens == sum(3 + count_tokens(m["content"]) for m in messages)
        assert usage.completion_tokens == count_tokens("The answer is 4.") == 5
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert second.usage.prompt_tokens > first.usage.prompt_tokens


def test_a_reply_body_is_sent_verbatim() -> None:
    body = chat_completion("exact", prompt_tokens=100, completion_tokens=40, finish_reason="length")
    with ScriptedLLM([Reply(body=body)]) as llm:
        completion = chat(llm, [{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "exact"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 40)
    assert completion.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (422, openai.UnprocessableEntityError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_status_codes_raise_the_openai_exceptions(status: int, error: type[openai.APIStatusError]) -> None:
    with ScriptedLLM([Reply(status)]) as llm, pytest.raises(error) as info:
        chat(llm, [{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    assert f"HTTP {status}" in str(info.value)


def test_error_bodies_reach_the_client() -> None:
    with ScriptedLLM([Reply(400, CONTEXT_OVERFLOW)]) as llm, pytest.raises(openai.BadRequestError) as info:
        chat(llm, [{"role": "user", "content": "x"}])
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length" in info.value.message


def test_a_dropped_connection_is_a_connection_error() -> None:
    with ScriptedLLM([Reply(drop=True)]) as llm:
        with pytest.raises(openai.APIConnectionError):
            chat(llm, [{"role": "user", "content": "x"}])
        assert chat(llm, [{"role": "user", "content": "x"}]).choices[0].message.content == "The answer is 4."


def test_health_models_and_the_trainers_probe() -> None:
    with ScriptedLLM(models=("a", "b")) as llm:
        wait_healthy(llm.base_url, timeout=5)
        with urllib.request.urlopen(llm.root_url + "/health", timeout=5) as resp:
            assert (resp.status, json.loads(resp.read())) == (200, {"status": "ok"})
        with urllib.request.urlopen(llm.base_url + "/models", timeout=5) as resp:
            assert [m["id"] for m in json.loads(resp.read())["data"]] == ["a", "b"]
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(llm.root_url + "/nowhere", timeout=5)
        assert info.value.code == 404
        assert probe_chat(llm.base_url, "a", "sk-key") == "The answer is 4."
        probe = llm.log[-1]
    assert probe.headers["authorization"] == "Bearer sk-key"
    assert is_probe(probe.body)


def test_max_tokens_cuts_the_reply_with_finish_reason_length() -> None:
    words = "one two three four five six"
    messages = [{"role": "user", "content": "count"}]
    with ScriptedLLM(default=Reply(content=words)) as llm:
        cut = chat(llm, messages, max_tokens=3)
        cut_new_style = chat(llm, messages, max_completion_tokens=2)
        whole = chat(llm, messages, max_tokens=6)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("one two three", "length")
    assert cut.usage.completion_tokens == 3
    assert (cut_new_style.choices[0].message.content, cut_new_style.choices[0].finish_reason) == ("one two", "length")
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (words, "stop")


def test_latency_is_added_to_every_reply() -> None:
    with ScriptedLLM(latency=0.3) as llm:
        started = time.monotonic()
        chat(llm, [{"role": "user", "content": "x"}])
        assert time.monotonic() - started >= 0.25
    assert ScriptedLLM(latency=10_000).latency == MAX_DELAY_S
    with pytest.raises(ValueError):
        ScriptedLLM(latency=-1)


def test_many_concurrent_requests_are_all_answered_and_logged() -> None:
    async def main(llm: ScriptedLLM) -> list[Any]:
        client = AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0, timeout=20)
        try:
            calls = [
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": t["question"]}])
                for t in TASKS[:20]
            ]
            return list(await asyncio.gather(*calls))
        finally:
            await client.close()

    with ScriptedLLM(perfect_agent(TASKS), latency=0.05) as llm:
        completions = asyncio.run(main(llm))
        assert len(llm.requests) == 20
    assert len({c.id for c in completions}) == 20
    for task, completion in zip(TASKS[:20], completions, strict=True):
        assert grade(completion.choices[0].message.content, task["answer"]).correct


def test_a_fixed_port_is_bound() -> None:
    port = closed_port()
    with ScriptedLLM(port=port) as llm:
        assert llm.port == port
        assert llm.base_url == f"http://127.0.0.1:{port}/v1"
        wait_healthy(llm.base_url, timeout=5)


def test_stop_wakes_a_handler_in_a_long_delay() -> None:
    errors: list[BaseException] = []

    def client() -> None:
        request = urllib.request.Request(llm.base_url + "/chat/completions", data=b'{"messages": []}', method="POST")
        try:
            urllib.request.urlopen(request, timeout=25).read()
        except (urllib.error.URLError, OSError) as exc:
            errors.append(exc)

    llm = ScriptedLLM([Reply(delay=20.0)]).start()
    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 10
    while not llm.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert llm.requests, "the request never arrived"
    started = time.monotonic()
    llm.stop()
    thread.join(timeout=10)
    assert time.monotonic() - started < 5
    assert not thread.is_alive() and len(errors) == 1


def test_scripts_give_replies_in_order_then_the_default() -> None:
    with ScriptedLLM([Reply(content="first"), (200, chat_completion("second"))], default=Reply(content="rest")) as llm:
        texts = [chat(llm, [{"role": "user", "content": "x"}]).choices[0].message.content for _ in range(3)]
    assert texts == ["first", "second", "rest"]
    with ScriptedLLM(lambda request: f"echo {len(request['messages'])}") as llm:
        assert chat(llm, [{"role": "user", "content": "x"}]).choices[0].message.content == "echo 1"


# -- agent behaviours ------------------------------------------------------------------------------


def _optimizer() -> ScriptedOptimizer:
    return ScriptedOptimizer(CRITIQUE, [EDITED])


@pytest.mark.parametrize(
    "make",
    [
        lambda: perfect_agent(TASKS),
        lambda: wrong_agent(TASKS),
        lambda: agent_when(TASKS, lambda system, question: False),
        _optimizer,
        lambda: route(agent=wrong_agent(TASKS), optimizer=_optimizer(), optimizer_models=("m",)),
        lambda: failing(perfect_agent(TASKS), after=1, times=5),
    ],
    ids=["perfect", "wrong", "agent_when", "optimizer", "route", "failing"],
)
def test_every_behaviour_answers_the_startup_probe_with_4(make: Any) -> None:
    with ScriptedLLM(make()) as llm:
        assert probe_chat(llm.base_url, "m", None) == "4"


def test_the_perfect_agent_grades_correct_on_50_generated_problems() -> None:
    agent = perfect_agent(TASKS)
    for task in TASKS:
        reply = content(agent(agent_request(task["question"])))
        assert reply.endswith(f"so the answer is {task['answer']}.")
        assert grade(reply, task["answer"]).correct, (task, reply)


def test_the_wrong_agent_grades_wrong_on_50_generated_problems() -> None:
    agent = wrong_agent(TASKS)
    for task in TASKS:
        graded = grade(content(agent(agent_request(task["question"]))), task["answer"])
        assert not graded.correct and graded.extracted is not None, task


def test_agents_know_the_splits_and_tolerate_whitespace() -> None:
    splits = load_splits(None, 4, 6, 6, 7)
    agent = perfect_agent([*splits.train, *splits.val, *splits.test])
    for task in splits.test:
        assert grade(content(agent(agent_request(f"  {task['question']}\n"))), task["answer"]).correct
    by_key = perfect_agent({"How many is 1,200 plus 50?": "1,250.0"})
    assert content(by_key(agent_request("How many is  1,200 plus 50?"))).endswith("the answer is 1250.")


def test_an_unknown_question_gets_a_reply_with_no_number() -> None:
    for agent in (perfect_agent(TASKS), wrong_agent(TASKS)):
        reply = content(agent(agent_request("Sam has 3 apples and eats 1. How many are left?")))
        assert reply == NO_ANSWER
        assert grade(reply, "2").extracted is None


def test_agent_when_follows_its_predicate() -> None:
    seen: list[tuple[str, str]] = []
    has_example = prompt_contains("worked example")

    def predicate(system: str, question: str) -> bool:
        seen.append((system, question))
        return has_example(system, question)

    agent = agent_when(TASKS, predicate)
    task = TASKS[0]
    with_example = "You solve problems. Worked example: 2 bags of 3 is 2 * 3 = 6."
    right = content(agent(agent_request(task["question"], system=with_example)))
    wrong = content(agent(agent_request(task["question"], system="You solve problems.")))
    assert grade(right, task["answer"]).correct
    assert not grade(wrong, task["answer"]).correct
    assert seen == [(with_example, task["question"]), ("You solve problems.", task["question"])]


# -- optimizer behaviour ---------------------------------------------------------------------------


def _apo_prompts_dir() -> Path:
    # find_spec locates the package without importing it (that costs seconds).
    spec = importlib.util.find_spec("agentlightning")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "algorithm" / "apo" / "prompts"


@pytest.fixture(scope="module")
def apo_requests() -> dict[str, dict[str, Any]]:
    """Every APO template rendered as apo.py renders it: ``poml.poml(file, context, "openai_chat")``."""
    poml = pytest.importorskip("poml")
    experiments = [
        {
            "status": "succeeded",
            "final_reward": 0.0,
            "spans": [{"name": "math_rollout", "attributes": {"reward": 0.0}, "status": "OK"}],
            "messages": [
                {"role": "system", "content": TEMPLATE.format(question=TASKS[0]["question"])},
                {"role": "user", "content": TASKS[0]["question"]},
                {"role": "assistant", "content": "I think it is 3."},
            ],
        }
    ]
    rendered = {}
    for path in sorted(_apo_prompts_dir().glob("*.poml")):
        if path.name.startswith("apply_edit"):
            context: dict[str, Any] = {"prompt_template": TEMPLATE, "critique": CRITIQUE}
        else:
            context = {"experiments": experiments, "prompt_template": TEMPLATE}
        rendered[path.name] = {"model": "critic", **poml.poml(path, context=context, format="openai_chat")}
    assert len(rendered) == 5, sorted(rendered)
    return rendered


def test_the_optimizer_tells_gradient_from_edit_on_apo_templates(apo_requests: dict[str, dict[str, Any]]) -> None:
    given: list[tuple[str, str]] = []

    def edit(prompt: str, critique: str) -> str:
        given.append((prompt, critique))
        return EDITED

    optimizer = ScriptedOptimizer(CRITIQUE, edit)
    for name, request in apo_requests.items():
        expected = "edit" if name.startswith("apply_edit") else "gradient"
        assert call_kind(request) == expected, name
        assert extract_prompt(request) is not None and extract_prompt(request)[0] == TEMPLATE, name  # type: ignore[index]
        assert content(optimizer(request)) == (EDITED if expected == "edit" else CRITIQUE), name
    assert optimizer.kinds == ["edit", "edit", "gradient", "gradient", "gradient"]
    assert given == [(TEMPLATE, CRITIQUE)] * 2
    assert [c.prompt for c in optimizer.calls] == [TEMPLATE] * 5


def test_a_prompt_quoting_another_template_does_not_flip_the_kind(apo_requests: dict[str, dict[str, Any]]) -> None:
    request = json.loads(json.dumps(apo_requests["text_gradient_variant01.poml"]))
    request["messages"][-1]["content"] += "\nRevise the prompt to address ONE critique point"
    assert call_kind(request) == "gradient"
    assert call_kind(agent_request(TASKS[0]["question"])) is None


@pytest.mark.slow  # importing agentlightning alone takes ~20 s on a busy 2-core machine
def test_apo_takes_the_scripted_edit_as_its_new_prompt() -> None:
    """Through APO's own critique-and-edit step: the edit reply is exactly what APO keeps."""
    pytest.importorskip("poml")
    import agentlightning as agl
    from agentlightning.algorithm.apo.apo import APO, VersionedPromptTemplate

    optimizer = ScriptedOptimizer(CRITIQUE, [EDITED])
    rollouts: list[Any] = [{"status": "succeeded", "final_reward": 1.0, "spans": [], "messages": []}]

    async def main(llm: ScriptedLLM) -> str | None:
        client = AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0, timeout=30)
        apo: APO[Any] = APO(client, gradient_model="critic", apply_edit_model="editor", gradient_batch_size=1)
        parent = VersionedPromptTemplate("v0", agl.PromptTemplate(template=TEMPLATE, engine="f-string"))
        try:
            new_prompt: str | None = await apo.textual_gradient_and_apply_edit(parent, rollouts)
            return new_prompt
        finally:
            await client.close()

    with ScriptedLLM(optimizer) as llm:
        new_prompt = asyncio.run(main(llm))
        models = [r["model"] for r in llm.requests]
    assert new_prompt == EDITED
    assert optimizer.kinds == ["gradient", "edit"]
    assert models == ["critic", "editor"]
    assert all(call.prompt == TEMPLATE for call in optimizer.calls)


def test_scripted_edits_are_used_in_order_then_cycled(apo_requests: dict[str, dict[str, Any]]) -> None:
    optimizer = ScriptedOptimizer(CRITIQUE, ["first", "second"])
    edit = apo_requests["apply_edit_variant02.poml"]
    assert [content(optimizer(edit)) for _ in range(3)] == ["first", "second", "first"]
    with pytest.raises(ValueError):
        ScriptedOptimizer(CRITIQUE, [])


def test_prompt_rewrites_are_small_distinct_and_renderable() -> None:
    edit = prompt_rewrites(["Hint A.", "Hint B."])
    limits = GuardLimits(max_chars=4000, max_growth=4.0)
    first, second, third, fourth = (edit(p, CRITIQUE) for p in (TEMPLATE, TEMPLATE, TEMPLATE + " Hint A.", TEMPLATE))
    assert (first, second) == (TEMPLATE + " Hint A.", TEMPLATE + " Hint B.")
    assert third == TEMPLATE  # the hint is toggled off again
    assert fourth == second  # hints rotate
    again = prompt_rewrites(["Hint A.", "Hint B."])
    assert [again(TEMPLATE, ""), again(TEMPLATE, "")] == [first, second]  # deterministic
    assert rejection_reason(first, parent=TEMPLATE, seen=[TEMPLATE], limits=limits) is None
    assert rejection_reason(second, parent=TEMPLATE, seen=[TEMPLATE, first], limits=limits) is None
    with pytest.raises(ValueError):
        prompt_rewrites(["Use {braces}."])


# -- composition -----------------------------------------------------------------------------------


def test_route_dispatches_by_model_then_by_content(apo_requests: dict[str, dict[str, Any]]) -> None:
    optimizer = _optimizer()
    script = route(agent=perfect_agent(TASKS), optimizer=optimizer, optimizer_models=("critic", "editor"))
    question = TASKS[0]["question"]
    assert grade(content(script(agent_request(question, model="agent"))), TASKS[0]["answer"]).correct
    content(script(agent_request(question, model="editor")))
    gradient = {**apo_requests["text_gradient_variant02.poml"], "model": "agent"}
    assert content(script(gradient)) == CRITIQUE  # one model name for every role: told apart by content
    assert optimizer.kinds == ["unknown", "gradient"]
    blind = route(agent=perfect_agent(TASKS), optimizer=optimizer, optimizer_models=("critic",), detect=False)
    assert content(blind(gradient)) == NO_ANSWER


def test_failing_fails_exactly_times_after_n_requests() -> None:
    messages = [{"role": "user", "content": TASKS[0]["question"]}]
    outcomes: list[Any] = []
    with ScriptedLLM(failing(perfect_agent(TASKS), status=503, after=2, times=3)) as llm:
        for _ in range(8):
            try:
                outcomes.append(chat(llm, messages).choices[0].finish_reason)
            except openai.APIStatusError as exc:
                outcomes.append(exc.status_code)
    assert outcomes == ["stop", "stop", 503, 503, 503, "stop", "stop", "stop"]


def test_failing_rate_limits_and_drops() -> None:
    messages = [{"role": "user", "content": "x"}]
    limited = failing(lambda r: Reply(), status=429, times=1, headers={"retry-after": "0"})
    with ScriptedLLM(limited) as llm:
        with pytest.raises(openai.RateLimitError) as info:
            chat(llm, messages)
        assert info.value.code == RATE_LIMITED["error"]["code"]
        chat(llm, messages)
    with ScriptedLLM(dropping(lambda r: Reply(), after=1, times=2)) as llm:
        chat(llm, messages)
        for _ in range(2):
            with pytest.raises(openai.APIConnectionError):
                chat(llm, messages)
        chat(llm, messages)
        assert len(llm.requests) == 4
    with pytest.raises(ValueError):
        failing(lambda r: Reply(), status=200)


# -- python -m trainer.testing serve ---------------------------------------------------------------


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = closed_port()
    env = trainer_env(TRAIN_SIZE="4", VAL_SIZE="6", TEST_SIZE="6", SEED="5", LOG_LEVEL="INFO")
    env.pop("DATASET_PATH", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.testing", "serve", "--port", str(port)],
        cwd=tmp_path,  # no .env there
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 9)
            proc.communicate(timeout=10)


def test_the_serve_command_answers_as_agent_and_optimizer(
    served: tuple[str, subprocess.Popen[str]], apo_requests: dict[str, dict[str, Any]]
) -> None:
    base_url, proc = served
    wait_healthy(base_url, timeout=30)
    assert probe_chat(base_url, "scripted", None) == "4"
    splits = load_splits(None, 4, 6, 6, 5)
    for task in (splits.train[0], splits.val[0], splits.test[0]):
        reply = _post(base_url, agent_request(task["question"], model="scripted"))
        assert grade(reply, task["answer"]).correct, (task, reply)
    edit = {**apo_requests["apply_edit_variant01.poml"], "model": "scripted"}
    assert _post(base_url, edit).startswith(TEMPLATE + " ")  # a small rewrite of the prompt it was given
    os.kill(proc.pid, 15)  # SIGTERM, as `docker stop` or a supervisor sends
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert base_url in stderr


def _post(base_url: str, body: dict[str, Any]) -> str:
    request = urllib.request.Request(
        base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return str(json.loads(resp.read())["choices"][0]["message"]["content"])
