"""Errors raised by the task datamodules, each with a message that says what to do."""

from __future__ import annotations

from methods.input_errors import InputError


class RowProblem(Exception):
    """A problem with one field of one raw row, raised by the task hooks.

    The datamodule catches it and turns it into a :class:`BadRowError` that names the task, the
    split and the row (or counts it when ``on_bad_row="skip"``).

    Args:
        field: name of the offending field (hub field name, or ``response``/``prompt``).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class BadRowError(ValueError, InputError):
    """A raw row that cannot become a training/evaluation example.

    Args:
        task: task name (``rte``...).
        split: derived split (``train``/``dev``/``test``).
        source: source split or file the row comes from (``validation``...).
        row: 0-based row index in that source.
        field: the offending field.
        reason: what is wrong with it.
    """

    def __init__(
        self, task: str, split: str, source: str, row: int, field: str, reason: str
    ) -> None:
        self.task, self.split, self.source, self.row = task, split, source, row
        self.field, self.reason = field, reason
        super().__init__(
            f"{task}: bad row in split {split!r} (source {source!r}, row {row}), field {field!r}: "
            f"{reason}. Fix the data, or pass on_bad_row='skip' to drop such rows "
            f"(they are counted in dm.stats[{split!r}])."
        )


class AllRowsDroppedError(ValueError, InputError):
    """``on_bad_row="skip"`` dropped every row of a split: a run on nothing is refused."""


class MissingSplitError(FileNotFoundError, InputError):
    """A split needed by the current stage has no source (e.g. BoolQ train in the local bundle)."""


class DataSourceError(RuntimeError, InputError):
    """Neither a local data folder nor the Hugging Face hub could provide the data."""


class StageNotSupportedError(ValueError, InputError):
    """The task has no such split at all (MT-Bench cannot be trained on, Alpaca has no test)."""


class TaskDefinitionError(ValueError):
    """A mistake in a task's declarations (template, label words, fields, split rule), found
    when the datamodule is set up, before any row is read. The message names the declaration
    and what to change in the task (its ``configs/tasks/*.yaml`` or its class)."""
