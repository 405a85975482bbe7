"""`make bench-demos`: what demonstrations do for the embedded model, honestly, at one rollout budget.

Four arms on the same data (one generated data set per seed), each a real ``python -m trainer
train`` on the embedded SmolLM2-135M (agent and optimizer) with the same settings:

- seed: the seed prompt, as each training scores it on the held-out test split;
- plain: stock APO, instruction edits only (``--demos 0``);
- demos: demonstrations only (``INSTRUCTION_EDITS=false``);
- both: the default (edits and demonstrations).

Every arm spends the same training rollouts (trainer.apo.plan says so; the summary's count is
printed). The test split is never tuned on. For each arm the script prints the best prompt's test
score pooled over the seeds with its 95 % Wilson interval, and the exact McNemar test of best vs
seed on the same test problems (discordant pairs pooled over seeds), per seed too. A gain is not
expected on a 135M model; the figures say what there is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import trainer_env
from trainer.records.stats import mcnemar_exact, wilson
from trainer.records.summary import Summary

ARMS = {
    "plain": (["--demos", "0"], {}),
    "demos": ([], {"INSTRUCTION_EDITS": "false"}),
    "both": ([], {}),
}


@dataclass
class Tally:
    correct: int = 0
    n: int = 0
    only_seed: int = 0
    only_best: int = 0

    def add(self, correct: int, n: int, only_seed: int = 0, only_best: int = 0) -> None:
        self.correct += correct
        self.n += n
        self.only_seed += only_seed
        self.only_best += only_best

    def line(self, name: str, paired: bool = True) -> str:
        score = wilson(self.correct, self.n)
        text = f"{name:<6} {score.value:6.3f}  [{score.low:.3f}, {score.high:.3f}]  ({self.correct}/{self.n})"
        if paired:
            p = mcnemar_exact(self.only_seed, self.only_best)
            text += f"   vs seed: +{self.only_best} / -{self.only_seed}, McNemar p = {p:.3f}"
        return text


def train(arm: str, seed: int, flags: list[str], out: Path) -> Summary:
    extra, env = ARMS[arm]
    command = [sys.executable, "-m", "trainer", "train", "--output", str(out), "--seed", str(seed), *flags, *extra]
    started = time.monotonic()
    result = subprocess.run(command, env=trainer_env(LOG_LEVEL="WARNING", **env), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{arm} seed {seed} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    summary = Summary.load(out / "summary.json")
    demos = ""
    if summary.demonstrations is not None:
        demos = f", best shows {len(summary.demonstrations.best)} examples, pool {summary.demonstrations.pool}"
    print(
        f"  seed {seed} {arm:<6} rollouts {summary.rollouts}, best {summary.best_prompt_version} "
        f"val {summary.best_val_score:.3f}, test seed {summary.seed_test.correct}/{summary.seed_test.n} "
        f"best {summary.best_test.correct}/{summary.best_test.n}{demos} ({time.monotonic() - started:.0f} s)",
        flush=True,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="data and search seeds")
    parser.add_argument("--iterations", type=int, default=2, help="APO rounds of every arm")
    parser.add_argument("--test-size", type=int, default=60, help="held-out problems per seed")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, no figures to quote")
    parser.add_argument("--json", type=Path, help="also write every run's summary here")
    args = parser.parse_args()
    flags = ["--iterations", str(args.iterations), "--test-size", str(args.test_size)]
    if args.quick:
        flags = ["--iterations", "1", "--beam-width", "1", "--train-size", "8", "--gradient-batch-size", "2",
                 "--val-size", "4", "--val-batch-size", "4", "--test-size", "4"]  # fmt: skip
    print(f"demonstrations benchmark: seeds {args.seeds}, settings {' '.join(flags)} (the rest default)", flush=True)
    tallies = {name: Tally() for name in ("seed", *ARMS)}
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-demos-") as tmp:
        for seed in args.seeds:
            for arm, (_extra, _env) in ARMS.items():
                summary = train(arm, seed, flags, Path(tmp) / f"{arm}-{seed}")
                paired = summary.paired_test
                tallies[arm].add(summary.best_test.correct, summary.best_test.n, paired.only_seed, paired.only_best)
                tallies["seed"].add(summary.seed_test.correct, summary.seed_test.n)
                runs.append({"arm": arm, "seed": seed, "summary": summary.model_dump(mode="json")})
    print("\ntest score pooled over seeds (95% Wilson interval); best vs seed on the same problems")
    print(tallies["seed"].line("seed", paired=False) + "   (the seed, as each of the arms' runs scored it)")
    for arm in ARMS:
        print(tallies[arm].line(arm))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
