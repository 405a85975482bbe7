"""The tracked APO's events, written into the prompt DB as they happen.

Every prompt version, rejection and val evaluation is one transaction in the prompt DB, and the best
prompt is re-exported (atomically) whenever it changes: a run killed at any moment loses nothing
already scored and always leaves a best prompt behind.
"""

from __future__ import annotations

from pathlib import Path

from trainer.agent.prompt import Change, Prompt
from trainer.apo.observer import APOObserver
from trainer.apo.scoring import ValScore
from trainer.records.prompt_db import VAL_SPLIT, PromptDB


class PromptRecorder(APOObserver):
    """Records one run's prompts in ``db`` and exports its best prompt into ``out_dir``."""

    def __init__(self, db: PromptDB, run_id: str, out_dir: Path) -> None:
        self.db = db
        self.run_id = run_id
        self.out_dir = out_dir
        self._ids: dict[str, int] = {}  # APO's label ("v3") -> prompt DB id
        self._pooled: dict[str, ValScore] = {}  # label -> its pooled val score as last recorded

    def prompt_id(self, label: str) -> int:
        return self._ids[label]

    def prompt_created(
        self, label: str, prompt: Prompt, *, parent: str | None, round_number: int, change: Change
    ) -> None:
        parent_id = self._ids.get(parent) if parent is not None else None
        self._ids[label] = self.db.add_prompt(
            self.run_id, label, prompt.render(), parent_id=parent_id, round=round_number, prompt=prompt, change=change
        )

    def prompt_rejected(self, label: str, reason: str, *, round_number: int) -> None:
        self.db.reject(self._ids[label], reason)

    def prompt_scored(self, label: str, *, round_number: int, batch: ValScore, current: ValScore, first: bool) -> None:
        """One evaluation row per batch that added data points to the prompt's pooled score.

        The DB pools a prompt's val score over its evaluation rows, so a row holds what the batch
        added to ``current``: with the rollout cache, a re-evaluation of val tasks the prompt was
        already scored on adds nothing (those rollouts repeat outcomes already counted).
        """
        before = self._pooled.get(label)
        added = current.n - (before.n if before is not None else 0)
        self._pooled[label] = current
        if added > 0:
            total = current.total - (before.total if before is not None else 0.0)
            self.db.record_evaluation(self._ids[label], VAL_SPLIT, round(total / added, 12), added)

    def prompt_unscored(self, label: str, *, round_number: int, planned: int, reason: str) -> None:
        self.db.record_unscored(self._ids[label], VAL_SPLIT, planned, reason)

    def best_changed(self, label: str, score: ValScore) -> None:
        prompt_id = self._ids[label]
        self.db.mark_best(self.run_id, prompt_id)
        self.export_best()

    def export_best(self) -> None:
        self.db.export_best(self.run_id, self.out_dir)
