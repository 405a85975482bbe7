"""Stock Agent Lightning APO, wired the way its own ``examples/apo`` does: the peer of our training.

``python -m benchmarks.stock_apo --base-url URL --model NAME --out DIR`` runs ``agl.APO`` under
``agl.Trainer`` with Agent Lightning's defaults (its default tracer, the client-server strategy,
``n_runners=2``) on the same math problems, splits and sizes as our training, with an agent that
sends the very requests ours does (the rendered prompt as system message, the question as user
message, temperature 0, the same reply cap) and grades replies with the same grader. Nothing of
ours runs in between: no guard, no reply cap on the optimizer, no fault handling, no cache.

Writes ``DIR/stock.json``: wall time, agent calls (one line per call in ``DIR/agent_calls.log``,
appended by the runner processes), optimizer calls (counted on the optimizer's HTTP client), and
the best prompt with its val score.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import agentlightning as agl
import httpx
from openai import AsyncOpenAI

from trainer.agent.template import render_prompt
from trainer.config import Settings
from trainer.data.splits import splits_for
from trainer.math_task import MATH
from trainer.task import Problem

CALLS_LOG = "agent_calls.log"


def make_agent(base_url: str, model: str, max_tokens: int, calls_log: Path) -> Any:
    @agl.rollout
    async def stock_agent(task: Problem, prompt_template: agl.PromptTemplate) -> float:
        client = AsyncOpenAI(base_url=base_url, api_key="not-needed")
        try:
            system = render_prompt(prompt_template.template, task, MATH.template_fields)
            started = time.monotonic()
            reply = await client.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": task["question"]}],
                temperature=0.0,
                max_tokens=max_tokens,
            )
            with calls_log.open("a") as log:  # one short line per call: O_APPEND keeps lines whole
                log.write(f"{task['id']} {time.monotonic() - started:.3f}\n")
            return MATH.grade(reply.choices[0].message.content or "", task).reward
        finally:
            await client.close()

    return stock_agent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-size", type=int, default=40)
    parser.add_argument("--val-size", type=int, default=20)
    parser.add_argument("--test-size", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runners", type=int, default=2)
    opts = parser.parse_args()
    settings = Settings(_env_file=None, train_size=opts.train_size, val_size=opts.val_size, test_size=opts.test_size)  # type: ignore[call-arg]
    splits = splits_for(MATH, settings)
    opts.out.mkdir(parents=True, exist_ok=True)
    calls_log = opts.out / CALLS_LOG
    calls_log.write_text("")
    optimizer_calls = 0

    async def count(request: httpx.Request) -> None:
        nonlocal optimizer_calls
        if request.url.path.endswith("/chat/completions"):
            optimizer_calls += 1

    optimizer = AsyncOpenAI(
        base_url=opts.base_url, api_key="not-needed", http_client=httpx.AsyncClient(event_hooks={"request": [count]})
    )
    algorithm = agl.APO(
        optimizer,
        gradient_model=opts.model,
        apply_edit_model=opts.model,
        val_batch_size=10,
        gradient_batch_size=4,
        beam_width=2,
        branch_factor=2,
        beam_rounds=opts.rounds,
    )
    trainer = agl.Trainer(
        algorithm=algorithm,
        n_runners=opts.runners,
        initial_resources={"prompt_template": agl.PromptTemplate(template=MATH.seed_prompt, engine="f-string")},
        adapter=agl.TraceToMessages(),
    )
    started = time.monotonic()
    trainer.fit(
        make_agent(opts.base_url, opts.model, settings.max_reply_tokens, calls_log),
        train_dataset=list(splits.train),
        val_dataset=list(splits.val),
    )
    wall = time.monotonic() - started
    calls = [line.split() for line in calls_log.read_text().splitlines() if line.strip()]
    result = {
        "wall_seconds": round(wall, 1),
        "agent_calls": len(calls),
        "agent_call_seconds_total": round(sum(float(c[1]) for c in calls), 1),
        "optimizer_calls": optimizer_calls,
        "best_prompt": algorithm.get_best_prompt().template,
        "best_val_score": algorithm._history_best_score,
        "splits": [len(splits.train), len(splits.val), len(splits.test)],
    }
    (opts.out / "stock.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "best_prompt"}), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would fetch it from the internet
    sys.exit(main())
