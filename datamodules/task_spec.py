"""``TaskSpec``: what a task is, independent of Lightning.

Class attributes declare the source, split rule, template, verbaliser, metric and generation
length; the row hooks turn one raw row (hub field names) into placeholder values, the gold
response and the metric targets. Hooks raise :class:`~datamodules.errors.RowProblem` for bad
rows; the datamodule turns that into an error naming task, split, row and field (or counts it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from datamodules.errors import RowProblem
from datamodules.sources import SPLITS, SplitRule
from datamodules.templates import placeholders


@dataclass
class RawRow:
    """One raw row and where it came from (for error messages)."""

    source: str
    row: int
    data: dict[str, Any]

Metric = Literal["accuracy", "f1_em", "rouge_l", "gsm8k_accuracy", "wikisql_execution"]


class TaskSpec:
    """Declarations and row hooks shared by every task datamodule.

    Attributes:
        task: task name; also the local folder ``<data_dir>/<task>/`` unless ``folder`` is set.
        folder: local folder name when it differs from ``task``.
        hub_path: Hugging Face hub dataset id (None: local data only).
        hub_name: hub config name (``rte``, ``main``...).
        split_rule: ``halve_validation``, ``train_holdout``, ``native`` or ``predict_only``
            (see :mod:`datamodules.sources`).
        holdout: dev rows held out of train under ``train_holdout``.
        test_source: source split of test under ``train_holdout`` / ``predict_only``.
        template: appendix C prompt as a ``str.format`` template; placeholders are hub field
            names (or the keys :meth:`prompt_fields` returns).
        truncate_field: the one placeholder (long context) that may be shortened.
        response_field: field holding the response for non-classification tasks.
        label_field: field holding the label id for classification tasks.
        label_words: verbaliser, indexed by label id (None: not a classification task).
        metric: metric name the evaluation code uses (None: loss only / judged).
        max_new_tokens: generation length for evaluation (overridable per instance).
        paper_batch_size: the paper's effective batch size (appendix E: 16 or 128).
        has_response: False for prompt-only tasks (MT-Bench).
        splits: the derived splits the task has.
    """

    task: ClassVar[str] = ""
    folder: ClassVar[str | None] = None
    hub_path: ClassVar[str | None] = None
    hub_name: ClassVar[str | None] = None
    split_rule: ClassVar[SplitRule] = "native"
    holdout: ClassVar[int] = 1000
    test_source: ClassVar[str] = "validation"
    template: ClassVar[str] = ""
    truncate_field: ClassVar[str | None] = None
    response_field: ClassVar[str | None] = None
    label_field: ClassVar[str] = "label"
    label_words: ClassVar[tuple[str, ...] | None] = None
    metric: ClassVar[Metric | None] = None
    max_new_tokens: int = 16
    paper_batch_size: ClassVar[int] = 16
    has_response: ClassVar[bool] = True
    splits: ClassVar[tuple[str, ...]] = SPLITS

    @property
    def response_source(self) -> str:
        """Name of the field the response comes from (for messages)."""
        return self.label_field if self.label_words else (self.response_field or "response")

    @classmethod
    def available_splits(cls) -> tuple[str, ...]:
        """Splits this task has (``predict`` uses ``test``; predict-only tasks: ``test``)."""
        return cls.splits

    @classmethod
    def source_of(cls, split: str) -> str:
        """Source split (file stem / hub split) a derived split is cut from."""
        rule = cls.split_rule
        if rule == "predict_only":
            return cls.test_source
        if rule == "halve_validation" and split in ("dev", "test"):
            return "validation"
        if rule == "train_holdout":
            return "train" if split in ("train", "dev") else cls.test_source
        return {"train": "train", "dev": "validation", "test": "test"}[split]

    @classmethod
    def holdout_size(cls, n_train: int) -> int:
        """Number of train rows held out as dev under ``train_holdout``."""
        return cls.holdout

    def text(self, row: dict[str, Any], name: str, allow_empty: bool = False) -> str:
        """A stripped text field of a row; :class:`RowProblem` when missing, not text or empty."""
        value = row.get(name)
        if value is None:
            raise RowProblem(name, "missing")
        if not isinstance(value, str):
            raise RowProblem(name, f"expected text, got {type(value).__name__} {value!r}")
        value = value.strip()
        if not value and not allow_empty:
            raise RowProblem(name, "empty text")
        return value

    def label_index(self, row: dict[str, Any]) -> int:
        """The row's label id, checked against the verbaliser."""
        value = row.get(self.label_field)
        if value is None:
            raise RowProblem(self.label_field, "missing")
        words = self.label_words or ()
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int) or not 0 <= value < len(words):
            raise RowProblem(
                self.label_field,
                f"label {value!r} is outside the verbaliser {words} (ids 0..{len(words) - 1})",
            )
        return value

    def prompt_fields(self, row: dict[str, Any]) -> dict[str, str]:
        """Values of the template placeholders (default: the same-named row fields)."""
        return {name: self.text(row, name) for name in placeholders(self.template)}

    def query(self, fields: dict[str, str]) -> str:
        """The task prompt (the chat style's ``<query>``) from the placeholder values."""
        return self.template.format(**fields)

    def response(self, row: dict[str, Any]) -> str:
        """Gold response text: the label word, or the ``response_field`` text."""
        if self.label_words:
            return self.label_words[self.label_index(row)]
        if self.response_field is None:
            raise NotImplementedError(f"{type(self).__name__} must define response()")
        return self.text(row, self.response_field)

    def targets(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        """What the metric needs; always ``{"text": response, ...}``."""
        out: dict[str, Any] = {"text": response}
        if self.metric == "accuracy":
            out |= {"label_word": response, "label": self.label_index(row)}
        return out

    def group_rows(self, split: str, rows: list[RawRow]) -> list[RawRow]:
        """Regroup the rows of a split before subsetting (E2E: one row per MR for eval)."""
        return rows
