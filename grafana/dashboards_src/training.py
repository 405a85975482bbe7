"""The "APO training" dashboard: the trainer's own ``apo_*`` metrics.

Every metric name comes from ``trainer.telemetry.metric_contract``, the declaration the trainer
registers its metrics from: a metric renamed there is renamed here at the next generation, and the
dashboard tests (which serve the contract's metrics) catch a query the contract cannot answer.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import heatmap
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

from trainer.telemetry import metric_contract as mc

from .common import (
    PROMETHEUS,
    RATE,
    Override,
    PanelBuilder,
    bargauge_panel,
    dashboard,
    dashed,
    fixed_color,
    numbered,
    prom,
    prop,
    section,
    stat_panel,
    table_panel,
    timeseries_panel,
)

# Series colours of the rollout outcomes; a KeyError here means the contract gained an outcome.
OUTCOME_COLORS = {"ok": "green", "llm_error": "red", "timeout": "orange", "bad_template": "purple"}
# What a candidate changed against its parent, one colour each, the same in every panel (and as the
# reward curve's markers, trainer/records/report.py). A KeyError: the contract gained a kind.
CHANGE_COLORS = {"seed": "gray", "instruction": "blue", "examples": "orange", "both": "purple"}
PERCENT = "percentunit"


def build() -> dm.Dashboard:
    board = dashboard(
        "apo-training",
        "APO training",
        "Agent Lightning APO: reward curves, rounds, rollouts, tokens and the best prompt "
        "(metrics pushed by the trainer to the collector, served to Prometheus on its :8890).",
    )
    section(board, "Progress", _progress())
    section(board, "Reward", _reward())
    section(board, "Rollouts", _rollouts())
    section(board, "Tokens and optimizer", _tokens_and_optimizer())
    section(board, "Run", [_run_info()])
    return numbered(board)


def _progress() -> list[PanelBuilder]:
    return [
        stat_panel(
            "APO round",
            "Current APO round (0 = evaluating the seed prompt) out of the rounds this run plans.",
            "short",
            [prom(mc.ROUND_NUMBER.name, "round", instant=True), prom(mc.ROUNDS_PLANNED.name, "planned", instant=True)],
            size=(4, 5),
            decimals=0,
        ),
        stat_panel(
            "Best val score",
            "Best validation score so far (share of val problems solved by the best prompt).",
            PERCENT,
            [prom(mc.BEST_VAL_SCORE.name, "best", instant=True)],
            size=(4, 5),
            steps=((None, "green"),),
            decimals=1,
        ),
        stat_panel(
            "Seed val score",
            "Validation score of the seed prompt: the reference every candidate is compared to.",
            PERCENT,
            [prom(mc.SEED_VAL_SCORE.name, "seed", instant=True)],
            size=(4, 5),
            decimals=1,
        ),
        stat_panel(
            "Best prompt version",
            "Label of the prompt version with the best val score (see `python -m trainer prompts show`).",
            "short",
            [
                prom(
                    # == 1: a pushed series the trainer dropped is sent as 0 (trainer/telemetry/metrics_push.py)
                    f"max by (prompt_version) ({mc.BEST_PROMPT_INFO.name} == 1)",
                    "{{prompt_version}}",
                    instant=True,
                ).format(pm.PromQueryFormat.TABLE)
            ],
            size=(4, 5),
            text_mode=cm.BigValueTextMode.VALUE,
            fields="/^prompt_version$/",  # the version is the label; the value is always 1
        ),
        stat_panel(
            "Held-out test score",
            "Score on the held-out test split, seed vs best prompt (set at the end of the run).",
            PERCENT,
            [prom(mc.TEST_SCORE.name, "{{prompt}}", instant=True)],
            size=(8, 5),
            decimals=1,
        ),
    ]


def _reward() -> list[PanelBuilder]:
    candidates = mc.CANDIDATE_VAL_SCORE.name
    reward = mc.ROLLOUT_REWARD
    return [
        timeseries_panel(
            "Val score: best so far, every candidate, seed",
            "Best val score so far (line), each evaluated candidate's val score (points, labelled with what it "
            "changed against its parent, its version and round; blue: the instruction, orange: the examples, "
            "purple: both) and the seed prompt's score (dashed reference).",
            PERCENT,
            [
                prom(mc.BEST_VAL_SCORE.name, "best so far"),
                # One query for every kind: a run without demonstrations still fills the panel.
                prom(candidates, "{{change}}: {{prompt_version}} (round {{round}})"),
                prom(mc.SEED_VAL_SCORE.name, "seed"),
            ],
            size=(16, 10),
            max_value=1,
            legend_calcs=("lastNotNull",),
            overrides=[
                ("^best so far$", [prop("custom.lineWidth", 3), fixed_color("green")]),
                ("^seed$", [dashed(), fixed_color(CHANGE_COLORS["seed"])]),
                (
                    r".*\(round .*\)$",  # candidates: one point per evaluation, not a line
                    [
                        prop("custom.drawStyle", "points"),
                        prop("custom.pointSize", 7),
                        prop("custom.showPoints", "always"),
                    ],
                ),
                *_change_colors(r"^{change}: .*\(round .*\)$"),
            ],
        ),
        _candidate_scores_by_round(candidates),
        _reward_heatmap(),
        bargauge_panel(
            "Mean val reward by prompt version",
            "Mean reward of all val rollouts of each prompt version (from the reward histogram).",
            PERCENT,
            prom(
                f'sum by (prompt_version) ({reward.sum}{{split="val"}}) '
                f'/ sum by (prompt_version) ({reward.count}{{split="val"}})',
                "{{prompt_version}}",
                instant=True,
            ),
            size=(9, 9),
            max_value=1,
        ),
        _candidates_by_change(),
    ]


def _change_colors(pattern: str) -> list[Override]:
    """A fixed colour per change kind for the series whose name matches ``pattern`` with ``{change}`` filled in."""
    return [(pattern.format(change=change), [fixed_color(CHANGE_COLORS[change])]) for change in mc.CHANGE.values]


def _candidate_scores_by_round(candidates: str) -> PanelBuilder:
    return bargauge_panel(
        "Candidate val scores by round",
        "Every evaluated prompt version's val score, labelled round / version / what it changed against its "
        "parent (colour: blue instruction, orange examples, purple both, gray the seed).",
        PERCENT,
        prom(candidates, "r{{round}} {{prompt_version}} {{change}}", instant=True),
        size=(8, 10),
        max_value=1,
        overrides=_change_colors(r"^r\d+ \S+ {change}$"),
    )


def _candidates_by_change() -> PanelBuilder:
    return bargauge_panel(
        "Candidates by change",
        "Candidates made so far (rejected ones too) by what they changed against their parent: the "
        "instruction (an optimizer edit), the examples (a new demonstration set) or both (a combination: "
        "the best instruction with the best examples).",
        "short",
        prom(f"sum by (change) ({mc.CANDIDATES_PROPOSED.name})", "{{change}}", instant=True),
        size=(6, 9),
        overrides=_change_colors("^{change}$"),
        decimals=0,
    )


def _reward_heatmap() -> heatmap.Panel:
    query = prom(f'sum by (le) (increase({mc.ROLLOUT_REWARD.bucket}{{split="val"}}{RATE}))', "{{le}}")
    return (
        heatmap.Panel()
        .title("Val reward distribution")
        .description(
            "Val rollouts per reward bucket over time (rewards are 0 or 1). Exemplars link a reward to its "
            "rollout's trace in Jaeger (needs Prometheus' exemplar storage)."
        )
        .datasource(PROMETHEUS)
        .with_target(query.ref_id("A").format(pm.PromQueryFormat.HEATMAP).exemplar(True))
        .scale_distribution(cb.ScaleDistributionConfig().type(cm.ScaleDistribution.LINEAR))
        .calculate(False)  # the buckets are the histogram's own
        .cell_gap(1)
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Greens")
            .steps(64)
            .exponent(0.5)
            .fill("dark-green")
        )
        .y_axis(heatmap.YAxisConfig().axis_placement(cm.AxisPlacement.LEFT).unit("short").decimals(1))
        .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.LE))
        .show_legend()
        .mode(cm.TooltipDisplayMode.SINGLE)
        .show_y_histogram()
        .show_color_scale(False)
        .exemplars_color("rgba(255,0,255,0.7)")
        .filter_values(heatmap.FilterValueRange().le(1e-09))  # hide empty cells
        .span(9)
        .height(9)
    )


def _rollouts() -> list[PanelBuilder]:
    rollouts = mc.ROLLOUTS.name
    return [
        timeseries_panel(
            "Rollouts/s by outcome",
            "Finished rollouts per second by outcome: ok, llm_error, timeout, bad_template (a failed rollout "
            "scores 0 but never stops the run).",
            "ops",
            [prom(f"sum by (outcome) (rate({rollouts}{RATE}))", "{{outcome}}")],
            size=(8, 8),
            overrides=[
                (f"^{outcome}$", [fixed_color(OUTCOME_COLORS[outcome])]) for outcome in mc.ROLLOUT_OUTCOME.values
            ],
        ),
        timeseries_panel(
            "Rollouts/s by split",
            "Rollouts per second on train (critiques), val (scoring prompts) and test (final report); "
            '"from cache": those the rollout cache answered without an agent call.',
            "ops",
            [
                prom(f"sum by (split) (rate({rollouts}{RATE}))", "{{split}}"),
                prom(f"sum by (split) (rate({mc.ROLLOUT_CACHE_HITS.name}{RATE}))", "{{split}} from cache"),
            ],
            size=(8, 8),
        ),
        bargauge_panel(
            "Rollouts by split and outcome (total)",
            "All rollouts of this trainer process so far.",
            "short",
            prom(f"sum by (split, outcome) ({rollouts})", "{{split}} {{outcome}}", instant=True),
            size=(8, 8),
        ),
        timeseries_panel(
            "Rollout latency p50 / p95",
            "Wall time of a rollout (agent run, grading, span flush), by split.",
            "s",
            _quantiles(mc.ROLLOUT_DURATION, "split", "{{split}}"),
            size=(12, 8),
        ),
        timeseries_panel(
            "LLM request latency p50 / p95 by role",
            "Time inside LLM requests: agent (rollouts), gradient (critiques) and edit (rewrites).",
            "s",
            _quantiles(mc.LLM_REQUEST_DURATION, "role, model", "{{role}} {{model}}"),
            size=(12, 8),
        ),
    ]


def _quantiles(histogram: mc.HistogramMetric, by: str, legend: str) -> list[pb.Dataquery]:
    return [
        prom(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({histogram.bucket}{RATE})))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.95)
    ]


def _tokens_and_optimizer() -> list[PanelBuilder]:
    tokens = mc.LLM_TOKENS.name
    return [
        timeseries_panel(
            "Tokens/s by role",
            "LLM tokens per second by role (agent, gradient, edit) and kind (input, output).",
            "short",
            [prom(f"sum by (role, kind) (rate({tokens}{RATE}))", "{{role}} {{kind}}")],
            size=(12, 8),
        ),
        bargauge_panel(
            "Tokens by role and model (total)",
            "All LLM tokens of this run so far.",
            "short",
            prom(f"sum by (role, model, kind) ({tokens})", "{{role}} {{kind}} ({{model}})", instant=True),
            size=(6, 8),
        ),
        stat_panel(
            "Candidates and failed branches",
            "Candidates evaluated, candidates rejected by the guard before any rollout, and critique/edit "
            "branches lost to optimizer errors.",
            "short",
            [
                prom(f"sum by (outcome) ({mc.CANDIDATES.name})", "{{outcome}}", instant=True),
                prom(f"sum({mc.OPTIMIZER_FAILED_BRANCHES.name})", "failed branches", instant=True),
            ],
            size=(6, 8),
            decimals=0,
        ),
    ]


def _run_info() -> PanelBuilder:
    hidden = {name: True for name in ("Time", "Value", "__name__", "job", "instance")}
    columns = {name: index for index, name in enumerate(mc.RUN_INFO.label_names)}
    organize = dm.DataTransformerConfig(
        id_val="organize", options={"excludeByName": hidden, "indexByName": columns, "renameByName": {}}
    )
    return (
        table_panel("Run info", "The run this trainer is doing: id, algorithm, models, dataset.", size=(24, 5))
        .datasource(PROMETHEUS)
        .with_target(prom(mc.RUN_INFO.name, instant=True).ref_id("A").format(pm.PromQueryFormat.TABLE))
        .with_transformation(organize)  # one row: the run's labels as columns, in the contract's order
    )
