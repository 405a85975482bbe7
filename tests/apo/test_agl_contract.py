"""Contract test: the Agent Lightning 0.3.0 internals this project overrides or relies on.

TrackedAPO (trainer/apo/algorithm.py) overrides private APO steps, the tracers
(trainer/telemetry/tracers.py) reach into OtelTracer's internals, and the training
(trainer/training/lightning.py, rollout.py) builds Agent Lightning objects with keyword arguments.
None of it is public API, so a version bump can break it silently or only minutes into a training.
This module fails in seconds instead, and each failure says what changed and which module of
ours depends on it. Lists of overrides and calls are derived from our own code (class
``__dict__``s and an AST scan of ``trainer/``), so a new override or a new call is covered with no
edit here.
"""

from __future__ import annotations

import trainer  # sets LITELLM_LOCAL_MODEL_COST_MAP before Agent Lightning imports litellm (else ~10 s of retries)

# isort: split
import ast
import asyncio
import dataclasses
import importlib
import importlib.metadata
import inspect
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import agentlightning as agl
import pytest
from agentlightning.algorithm.apo import apo as apo_module
from agentlightning.algorithm.apo.apo import APO, RolloutResultForAPO, VersionedPromptTemplate
from agentlightning.tracer.base import with_active_tracer_context

from trainer.agent.model import ModelSpec
from trainer.agent.solve import RolloutConfig
from trainer.apo.algorithm import TrackedAPO
from trainer.apo.span_reads import compact_span
from trainer.config import Settings
from trainer.math_task import MATH
from trainer.telemetry.spans import ROLLOUT_SPAN_NAME, RolloutSpan
from trainer.telemetry.tracers import CollectorTracer, NoTracer, RolloutTracer
from trainer.training.rollout import make_rollout

VERSION = "0.3.0"
ALGORITHM = "trainer/apo/algorithm.py"
TRACERS = "trainer/telemetry/tracers.py"
LIGHTNING = "trainer/training/lightning.py"
ROLLOUT = "trainer/training/rollout.py"
TRAINER_DIR = Path(trainer.__file__).resolve().parent
REPO = TRAINER_DIR.parent

# TrackedAPO's own helpers (everything else it defines must override an APO method).
TRACKED_ONLY = {
    "_record_val", "_mark_best", "best_label", "_run_batch", "_store_name",
    "_seed_or_plain", "_parts_of", "_example_candidate", "_propose",
}  # fmt: skip
# Decorators that wrap APO methods, by the qualified name of the wrapper's code, and the argument
# each one injects (callers never pass it; the override must not declare it).
INJECTING_WRAPPERS = {
    "with_store.<locals>.wrapper": "store",
    "with_llm_proxy.<locals>.decorator.<locals>.wrapper": "llm_proxy",
}
PLAIN_WRAPPERS = {"with_active_tracer_context.<locals>.wrapper", "asynccontextmanager.<locals>.helper"}


def changed(what: str, module: str, detail: str = "") -> str:
    tail = f": {detail}" if detail else ""
    return f"Agent Lightning {installed_version()} changed {what} ({module} relies on it){tail}"


def installed_version() -> str:
    return importlib.metadata.version("agentlightning")


def unwrap(function: Callable[..., Any]) -> tuple[Callable[..., Any], list[str]]:
    """The innermost function under functools.wraps layers, and the arguments the layers inject."""
    injected: list[str] = []
    for _ in range(10):  # a real decorator stack is 1-3 deep
        inner = getattr(function, "__wrapped__", None)
        if inner is None:
            return function, injected
        code = getattr(function, "__code__", None)
        qualname = code.co_qualname if code is not None else repr(function)
        if qualname in INJECTING_WRAPPERS:
            injected.append(INJECTING_WRAPPERS[qualname])
        elif qualname not in PLAIN_WRAPPERS:
            raise AssertionError(f"unknown decorator {qualname} around {function!r}: does it inject arguments?")
        function = inner
    raise AssertionError(f"{function!r} is wrapped more than 10 times")


def caller_params(function: Callable[..., Any]) -> list[tuple[str, inspect._ParameterKind]]:
    """(name, kind) of each parameter a caller passes: decorator-injected ones removed."""
    inner, injected = unwrap(function)
    params = list(inspect.signature(inner).parameters.values())
    names = [p.name for p in params]
    assert sorted(names[1 : 1 + len(injected)]) == sorted(injected), f"{inner!r}: injected {injected} not after self"
    return [(p.name, p.kind) for p in params if p.name not in injected]


def overrides(cls: type, base: type) -> dict[str, Any]:
    """Functions ``cls`` itself defines that ``base`` (or its bases) also has."""
    own = {name: value for name, value in vars(cls).items() if inspect.isfunction(value) or isinstance(value, property)}
    return {name: value for name, value in own.items() if name != "__init__" and hasattr(base, name)}


# -- version ---------------------------------------------------------------------------------------


def test_agent_lightning_is_the_pinned_version() -> None:
    assert installed_version() == VERSION, (
        f"agentlightning {installed_version()} is installed, this project pins {VERSION}: TrackedAPO "
        f"({ALGORITHM}) overrides private APO methods and {TRACERS} reaches into OtelTracer; review both "
        "against the new source, then update this test"
    )
    assert agl.__version__ == VERSION, changed("agentlightning.__version__", ALGORITHM, agl.__version__)


# -- APO: what TrackedAPO overrides ----------------------------------------------------------------


def test_every_method_tracked_apo_defines_overrides_an_apo_method() -> None:
    own = {name for name, value in vars(TrackedAPO).items() if inspect.isfunction(value) or isinstance(value, property)}
    dead = own - TRACKED_ONLY - {"__init__"} - set(overrides(TrackedAPO, APO))
    assert not dead, changed(
        "APO's method names",
        ALGORITHM,
        f"TrackedAPO overrides {sorted(dead)}, which APO no longer has: those overrides never run "
        "(or, for a new helper of TrackedAPO, add it to TRACKED_ONLY here)",
    )
    missing_helpers = TRACKED_ONLY - own
    assert not missing_helpers, f"TRACKED_ONLY lists {sorted(missing_helpers)}, which TrackedAPO no longer defines"
    shadowed = TRACKED_ONLY & set(dir(APO))
    assert not shadowed, changed("APO's method names", ALGORITHM, f"APO now has {sorted(shadowed)} too: a clash")


@pytest.mark.parametrize("name", sorted(overrides(TrackedAPO, APO)))
def test_override_matches_apo_signature_and_async_ness(name: str) -> None:
    ours, theirs = getattr(TrackedAPO, name), getattr(APO, name)
    assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs), changed(
        f"whether APO.{name} is async",
        ALGORITHM,
        f"APO's is {'async' if inspect.iscoroutinefunction(theirs) else 'sync'}",
    )
    expected = caller_params(theirs)
    # An override may take more keyword-only parameters with defaults: APO's callers never pass them.
    extra = {p.name for p in inspect.signature(ours).parameters.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}  # fmt: skip
    extra -= {name for name, _ in expected}
    assert [p for p in caller_params(ours) if p[0] not in extra] == expected, changed(
        f"the signature of APO.{name}",
        ALGORITHM,
        f"APO's callers now pass {[(n, k.description) for n, k in expected]}; TrackedAPO.{name} must take the same",
    )


@pytest.mark.parametrize("name", sorted(set(overrides(TrackedAPO, APO)) - {"run"}))
def test_apo_still_calls_each_overridden_step(name: str) -> None:
    # run() is called by the Trainer; every other override only matters if APO's loop calls it.
    source = inspect.getsource(APO)
    assert f"self.{name}(" in source, changed(
        f"APO's search loop (it no longer calls self.{name}(...))", ALGORITHM, f"TrackedAPO.{name} would never run"
    )


def test_apo_keeps_the_loop_tracked_apo_hooks_into() -> None:
    run = inspect.getsource(unwrap(APO.run)[0])
    order = [
        "self._create_versioned_prompt(seed_prompt)",
        "self.evaluate_prompt_on_batch(",
        "self._sample_parent_prompts(beam, rnd)",
        "self._generate_candidate_prompts(",
        "self._evaluate_and_select_beam(all_candidates",
        "self._update_best_prompt(beam",
    ]
    positions = [run.find(step) for step in order]
    assert -1 not in positions and positions == sorted(positions), changed(
        "the order of APO.run's steps",
        ALGORITHM,
        "TrackedAPO marks the seed best on its first val score (round 0), starts a round in "
        "_sample_parent_prompts and finishes it in _update_best_prompt",
    )
    generate = inspect.getsource(APO._generate_candidate_prompts)
    assert "if not new_prompt:" in generate and "continue" in generate, changed(
        "how APO treats an empty edit", ALGORITHM, "a failed branch returns None and relies on APO skipping it"
    )
    best = inspect.getsource(APO.get_best_prompt)
    assert "self._history_best_prompt" in best, changed(
        "APO.get_best_prompt", ALGORITHM, "TrackedAPO._update_best_prompt sets APO's _history_best_* itself"
    )


def test_store_methods_tracked_apo_runs_a_batch_with() -> None:
    # TrackedAPO._run_batch replaces APO's evaluation loop and calls the store itself.
    store = agl.LightningStore
    for name, params in {
        "update_resources": {"resources_id", "resources"},
        "enqueue_rollout": {"input", "mode", "resources_id"},
        "wait_for_rollouts": {"rollout_ids", "timeout"},
        "query_rollouts": {"rollout_id_in"},
    }.items():
        signature = inspect.signature(getattr(store, name))
        assert params <= set(signature.parameters), changed(f"LightningStore.{name}'s parameters", ALGORITHM)


def test_tracked_apo_constructor_kwargs_are_apo_parameters() -> None:
    # The keywords trainer/training/train.py passes to TrackedAPO go to APO.__init__ (minus ours).
    tree = ast.parse((TRAINER_DIR / "training" / "train.py").read_text(encoding="utf-8"))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "TrackedAPO"
    ]
    assert calls, "trainer/training/train.py no longer builds TrackedAPO(...): update this test"
    ours = {
        "observer",
        "guard",
        "run_id",
        "store_url",
        "max_endpoint_failures",
        "seed",
        "examples",
        "reuses_outcomes",
        "max_reward",
    }
    passed = {kw.arg for call in calls for kw in call.keywords if kw.arg} - ours
    params = inspect.signature(APO.__init__).parameters
    unknown = sorted(passed - set(params))
    assert not unknown, changed("APO.__init__'s parameters", "trainer/training/train.py", f"no longer takes {unknown}")
    first = list(params.values())[1]
    assert first.name == "async_openai_client" and first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, changed(
        "APO.__init__'s first parameter", ALGORITHM, "TrackedAPO passes the optimizer client positionally"
    )


def test_apo_attributes_tracked_apo_reads() -> None:
    apo: APO[Any] = APO(object(), beam_rounds=3)
    client = apo.async_openai_client
    assert client is not None and apo.beam_rounds == 3, changed(
        "APO's attributes", ALGORITHM, "async_openai_client, beam_rounds"
    )
    assert apo._history_best_version is None, changed("APO._history_best_version", ALGORITHM)
    assert apo._history_best_score == -math.inf, changed("APO._history_best_score", ALGORITHM)
    assert callable(apo.get_store), changed("APO.get_store", ALGORITHM)
    template = agl.PromptTemplate(template="t", engine="f-string")
    labels = [apo._create_versioned_prompt(template).version for _ in range(3)]
    assert labels == ["v0", "v1", "v2"], changed("APO's version labels", "trainer/records/recorder.py", str(labels))


def test_apo_data_types() -> None:
    assert set(RolloutResultForAPO.__annotations__) == {"status", "final_reward", "spans", "messages"}, changed(
        "RolloutResultForAPO's keys", ALGORITHM, "TrackedAPO.get_rollout_results reads and rewrites 'spans'"
    )
    assert dataclasses.is_dataclass(VersionedPromptTemplate)
    fields = {f.name: f for f in dataclasses.fields(VersionedPromptTemplate)}
    assert list(fields) == ["version", "prompt_template", "score"], changed(
        "VersionedPromptTemplate's fields", ALGORITHM, str(list(fields))
    )
    assert fields["score"].default is None, changed("VersionedPromptTemplate.score's default", ALGORITHM)
    source = inspect.getsource(APO.get_rollout_results)
    assert "span.model_dump()" in source, changed(
        "how APO hands spans to get_rollout_results' callers", ALGORITHM, "spans_complete/compact_span read dicts"
    )
    # batch_wait.apo_result makes the same result out of spans the cut already read.
    for step in ("adapter.adapt(spans)", "find_final_reward(spans)", "status=r.status"):
        assert step in source, changed(
            "how APO turns a rollout's spans into its result", "trainer/apo/batch_wait.py", step
        )


def test_apo_private_module_details_the_in_process_test_patches() -> None:
    # tests/apo/test_tracked_apo.py makes APO's template choice cyclic.
    assert len(apo_module.GRADIENT_PROMPT_FILES) == 3, changed(
        "APO's critique templates", "trainer/testing/behaviours.py"
    )
    assert len(apo_module.APPLY_EDIT_PROMPT_FILES) == 2, changed(
        "APO's edit templates", "trainer/testing/behaviours.py"
    )
    assert all(p.is_file() for p in [*apo_module.GRADIENT_PROMPT_FILES, *apo_module.APPLY_EDIT_PROMPT_FILES])
    for name in ("choice", "sample"):
        assert f"random.{name}(" in inspect.getsource(APO), f"APO no longer calls random.{name}"


# -- spans as APO reads them -------------------------------------------------------------------------


class _CapturedSpan:
    """Stands in for an OpenTelemetry span: keeps what RolloutSpan writes."""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)


def root_span() -> agl.Span:
    captured = _CapturedSpan()
    RolloutSpan(captured).record_conversation("You solve problems.", "What is 2 + 2?", "The answer is 4.")  # type: ignore[arg-type]
    return agl.Span.from_attributes(
        attributes={**captured.attributes, "trainer.child_spans": 2},
        name=ROLLOUT_SPAN_NAME,
        status=agl.TraceStatus(status_code="OK"),
    )


def test_span_dump_is_what_compact_span_reads() -> None:
    dumped = root_span().model_dump()
    assert {"name", "attributes", "status"} <= set(dumped), changed("agl.Span's fields", ALGORITHM, str(sorted(dumped)))
    assert dumped["status"] == {"status_code": "OK", "description": None}, changed("agl.TraceStatus", ALGORITHM)
    compact = compact_span(dumped)
    assert compact["name"] == ROLLOUT_SPAN_NAME and compact["status"] == "OK"
    assert compact["attributes"]["trainer.child_spans"] == 2


def test_trace_to_messages_rebuilds_the_conversation_rollout_span_records() -> None:
    adapter = agl.TraceToMessages()
    assert isinstance(adapter, agl.TraceAdapter)
    adapted = adapter.adapt([root_span()])
    assert [(m["role"], m["content"]) for m in adapted[0]["messages"]] == [
        ("system", "You solve problems."),
        ("user", "What is 2 + 2?"),
        ("assistant", "The answer is 4."),
    ], changed("TraceToMessages' reading of gen_ai.prompt.*/gen_ai.completion.*", "trainer/telemetry/spans.py")


# -- tracers ---------------------------------------------------------------------------------------


def params_of(function: Callable[..., Any]) -> list[tuple[str, str]]:
    return [(p.name, p.kind.name) for p in inspect.signature(function).parameters.values()]


def test_tracer_worker_hooks() -> None:
    init = [
        ("self", "POSITIONAL_OR_KEYWORD"),
        ("worker_id", "POSITIONAL_OR_KEYWORD"),
        ("store", "POSITIONAL_OR_KEYWORD"),
    ]
    assert params_of(agl.OtelTracer.init_worker) == init, changed("OtelTracer.init_worker's signature", TRACERS)
    assert params_of(agl.Tracer.init_worker) == init, changed("Tracer.init_worker's signature", TRACERS)
    inspect.signature(agl.Tracer.teardown_worker).bind(object(), 0)  # CollectorTracer calls it as (self, worker_id)
    # CollectorTracer skips OtelTracer's provider and calls the base hooks directly: they must set the store.
    tracer = NoTracer()
    store = agl.InMemoryLightningStore()
    agl.Tracer.init_worker(tracer, 3, store)
    assert tracer._store is store, changed("what Tracer.init_worker stores (self._store)", TRACERS)
    agl.Tracer.teardown_worker(tracer, 3)


@pytest.mark.parametrize("cls", [RolloutTracer, CollectorTracer, NoTracer])
def test_our_tracer_overrides_exist_on_the_base(cls: type) -> None:
    base = agl.OtelTracer if issubclass(cls, agl.OtelTracer) else agl.Tracer
    own = {name for name, value in vars(cls).items() if inspect.isfunction(value)} - {"__init__", "_wait_until_visible"}
    dead = sorted(name for name in own if not hasattr(base, name))
    assert not dead, changed(f"{base.__name__}'s methods", TRACERS, f"{cls.__name__} overrides {dead}, gone upstream")


def test_trace_context_layers_that_rollout_tracer_unwraps() -> None:
    # RolloutTracer calls super().trace_context.__wrapped__(self, ...) to reuse OtelTracer's body
    # under its own with_active_tracer_context: the layering must be wrapper -> asynccontextmanager.
    outer = agl.OtelTracer.trace_context
    assert outer.__code__.co_qualname == "with_active_tracer_context.<locals>.wrapper", changed(
        "OtelTracer.trace_context's decorator", TRACERS
    )
    helper = outer.__wrapped__
    assert helper.__code__.co_qualname == "asynccontextmanager.<locals>.helper", changed(
        "OtelTracer.trace_context.__wrapped__", TRACERS, "it must be the asynccontextmanager of the body"
    )
    assert inspect.isasyncgenfunction(helper.__wrapped__), changed("OtelTracer.trace_context's body", TRACERS)
    expected = [
        ("self", "POSITIONAL_OR_KEYWORD"),
        ("name", "POSITIONAL_OR_KEYWORD"),
        ("store", "KEYWORD_ONLY"),
        ("rollout_id", "KEYWORD_ONLY"),
        ("attempt_id", "KEYWORD_ONLY"),
    ]
    for cls in (agl.Tracer, agl.OtelTracer, RolloutTracer, CollectorTracer, NoTracer):
        assert params_of(unwrap(cls.trace_context)[0]) == expected, changed(f"{cls.__name__}.trace_context", TRACERS)
    assert callable(with_active_tracer_context)
    assert RolloutTracer.trace_context.__code__.co_qualname == "with_active_tracer_context.<locals>.wrapper"


def test_otel_tracer_provider_internals() -> None:
    tracer = agl.OtelTracer()
    assert hasattr(tracer, "_tracer_provider") and tracer._tracer_provider is None, changed(
        "OtelTracer._tracer_provider", TRACERS, "CollectorTracer sets it so create_span & co use its provider"
    )
    assert "self._tracer_provider" in inspect.getsource(agl.OtelTracer._get_tracer_provider), changed(
        "where OtelTracer finds its provider", TRACERS
    )
    # RolloutTracer adds its processor to the global provider and rollout_span opens spans on it.
    assert "trace_api.set_tracer_provider(self._tracer_provider)" in inspect.getsource(
        agl.OtelTracer._initialize_tracer_provider
    ), changed("OtelTracer.init_worker (it no longer installs its provider globally)", "trainer/telemetry/spans.py")


# -- stores, strategies, trainer, resources ----------------------------------------------------------


def test_store_client_close_and_query_spans() -> None:
    assert inspect.iscoroutinefunction(agl.LightningStoreClient.close), changed("LightningStoreClient.close", ALGORITHM)
    for store in (agl.LightningStoreClient, agl.LightningStore, agl.InMemoryLightningStore):
        assert inspect.iscoroutinefunction(store.query_spans), changed(f"{store.__name__}.query_spans", TRACERS)
        # CollectorTracer passes (rollout_id, attempt_id) positionally, APO passes rollout_id alone.
        inspect.signature(store.query_spans).bind(object(), "ro-1", "at-1")
        inspect.signature(store.query_spans).bind(object(), "ro-1")


def test_client_server_strategy_takes_what_lightning_py_passes() -> None:
    external = agl.ClientServerExecutionStrategy(role="runner", n_runners=2, managed_store=False)
    assert (external.role, external.n_runners, external.managed_store) == ("runner", 2, False), changed(
        "ClientServerExecutionStrategy", LIGHTNING
    )
    local = agl.ClientServerExecutionStrategy(role="both", n_runners=3, server_host="127.0.0.1", server_port=4999)
    assert (local.role, local.n_runners, local.server_host, local.server_port) == ("both", 3, "127.0.0.1", 4999), (
        changed("ClientServerExecutionStrategy", LIGHTNING)
    )


def test_the_strategy_step_runners_first_wraps() -> None:
    """lightning.py's RunnersFirst wraps the algorithm bundle _execute_algorithm gets, which stops the
    managed store server when that bundle returns, and names runner processes runner-N."""
    step = agl.ClientServerExecutionStrategy._execute_algorithm
    assert inspect.iscoroutinefunction(step), changed("ClientServerExecutionStrategy._execute_algorithm", LIGHTNING)
    assert list(inspect.signature(step).parameters) == ["self", "algorithm", "store", "stop_evt"], changed(
        "ClientServerExecutionStrategy._execute_algorithm", LIGHTNING
    )
    source = inspect.getsource(agl.ClientServerExecutionStrategy)
    assert 'name=f"runner-{i}"' in source, changed("ClientServerExecutionStrategy's runner process names", LIGHTNING)


def test_trainer_takes_what_lightning_py_passes() -> None:
    params = inspect.signature(agl.Trainer).parameters
    needed = ["algorithm", "n_runners", "initial_resources", "adapter", "tracer", "runner", "strategy", "store"]
    missing = [name for name in needed if name not in params or params[name].kind is inspect.Parameter.POSITIONAL_ONLY]
    assert not missing, changed("agl.Trainer's parameters", LIGHTNING, f"no keyword {missing}")
    fit = inspect.signature(agl.Trainer.fit)
    fit.bind(object(), object(), [], val_dataset=[])  # trainer/training/train.py: fit(agent, train, val_dataset=...)
    fit.bind(object(), object())  # trainer/training/runner.py: fit(agent)


def test_a_runner_polls_the_store_as_often_as_lightning_py_asks() -> None:
    from trainer.training.lightning import RUNNER_POLL_JITTER, RUNNER_POLL_SECONDS, lightning_trainer

    runner = lightning_trainer(Settings(_env_file=None, runners=1), algorithm=None).runner  # type: ignore[call-arg]
    assert isinstance(runner, agl.LitAgentRunner), changed("agl.Trainer(runner=...)", LIGHTNING)
    # Private to the runner: what its poll loop waits between asks of an empty queue.
    assert (runner._poll_interval, runner._interval_jitter) == (RUNNER_POLL_SECONDS, RUNNER_POLL_JITTER), changed(
        "LitAgentRunner's poll_interval/interval_jitter", LIGHTNING
    )


def test_prompt_template_resource() -> None:
    template = agl.PromptTemplate(template="Solve: {question}", engine="f-string")
    assert (template.template, template.engine) == ("Solve: {question}", "f-string"), changed(
        "PromptTemplate", ALGORITHM
    )
    assert template.format(question="2+2?") == "Solve: 2+2?", changed("PromptTemplate's f-string engine", ALGORITHM)


def test_rollout_decorator_passes_task_prompt_template_and_rollout() -> None:
    seen: list[Any] = []

    async def function(task: dict[str, Any], prompt_template: agl.PromptTemplate, rollout: agl.Rollout) -> float:
        seen.append((task, prompt_template, rollout))
        return 1.0

    probe = agl.rollout(function)  # what @agl.rollout does in trainer/training/rollout.py

    assert isinstance(probe, agl.LitAgent), changed("@agl.rollout", ROLLOUT)
    template = agl.PromptTemplate(template="t", engine="f-string")
    rollout = agl.Rollout(rollout_id="ro-1", input={"id": "p"}, start_time=0.0, mode="val", resources_id="rs-1")

    async def main() -> Any:
        return await probe.rollout_async({"id": "p"}, {"prompt_template": template}, rollout)

    assert asyncio.run(main()) == 1.0
    assert seen == [({"id": "p"}, template, rollout)], changed("what @agl.rollout passes a rollout function", ROLLOUT)
    # make_rollout reads these fields of the rollout it is given.
    for field in ("rollout_id", "mode", "resources_id"):
        assert field in agl.Rollout.model_fields, changed(f"agl.Rollout.{field}", ROLLOUT)
    assert "attempt" in agl.AttemptedRollout.model_fields, changed("agl.AttemptedRollout.attempt", ROLLOUT)
    spec = ModelSpec("http://127.0.0.1:9/v1", "m", None, 0.0, 8, 1.0, 0)
    agent = make_rollout(RolloutConfig(model=spec, task=MATH))
    assert isinstance(agent, agl.LitAgent) and agent.is_async(), changed(
        "@agl.rollout on make_rollout's function", ROLLOUT
    )


# -- everything trainer/ touches, found by reading it ---------------------------------------------------


def agl_uses() -> Iterator[tuple[str, int, list[str], ast.Call | None]]:
    """(file, line, attribute chain, call) for every ``agl.X[.Y]`` in trainer/ (call: if it is called)."""
    for path in sorted(TRAINER_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
        for node in ast.walk(tree):
            chain: list[str] = []
            current: ast.AST = node
            while isinstance(current, ast.Attribute):
                chain.insert(0, current.attr)
                current = current.value
            if isinstance(current, ast.Name) and current.id == "agl" and chain and isinstance(node, ast.Attribute):
                yield str(path.relative_to(REPO)), node.lineno, chain, calls.get(id(node))


def test_every_agl_name_trainer_uses_exists_and_accepts_its_arguments() -> None:
    problems: list[str] = []
    checked = 0
    for where, line, chain, call in agl_uses():
        obj: Any = agl
        try:
            for name in chain:
                obj = getattr(obj, name)
        except AttributeError:
            problems.append(f"{where}:{line} uses agl.{'.'.join(chain)}, which no longer exists")
            continue
        if call is None or any(isinstance(a, ast.Starred) for a in call.args):
            continue
        keywords = {kw.arg: None for kw in call.keywords if kw.arg is not None}
        try:
            inspect.signature(obj).bind_partial(*[None] * len(call.args), **keywords)
        except TypeError as exc:
            problems.append(f"{where}:{line} calls agl.{'.'.join(chain)}({', '.join(keywords)}): {exc}")
        checked += 1
    assert not problems, changed("names or signatures trainer/ uses", "the modules listed", "\n" + "\n".join(problems))
    assert checked >= 8, f"only {checked} agl calls found in trainer/: is the AST scan still finding them?"


def test_every_agentlightning_import_in_trainer_resolves() -> None:
    problems = []
    for path in sorted(TRAINER_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agentlightning"):
                module = importlib.import_module(node.module or "")
                problems += [
                    f"{path.relative_to(REPO)}:{node.lineno}: {node.module}.{alias.name}"
                    for alias in node.names
                    if not hasattr(module, alias.name)
                ]
    assert not problems, changed("module layout", "the modules listed", ", ".join(problems))
