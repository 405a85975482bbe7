"""The data: problems, where they come from (generated or JSONL) and how they are split.

Modules: ``numbers`` (exact canonical answers), ``problems`` (the task type and the generator),
``jsonl`` (datasets from files), ``splits`` (train/val/test).
"""


class DatasetError(ValueError):
    """A dataset cannot be generated, loaded or split; the message is written for the user."""
