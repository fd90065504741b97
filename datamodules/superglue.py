"""SuperGLUE tasks: BoolQ, COPA (accuracy) and ReCoRD (F1/EM), plus SQuAD v1.1 (F1/EM)."""

from __future__ import annotations

from typing import Any

from datamodules.errors import RowProblem
from datamodules.task_datamodule import TaskDataModule

QA_TEMPLATE = "Context:\n{}\nQuestion:\n{}"  # appendix C, ReCoRD and SQuAD: [context], [query]


class BoolQ(TaskDataModule):
    """BoolQ (``super_glue``, config ``boolq``; fields question, passage, label).

    Split (appendix B.1, <10k rows): original train is train; the original validation (3,270) is
    permuted with ``seed`` and halved into dev (1,635) and test (1,635). Label 0 (False) = "no",
    1 (True) = "yes". Only the passage is shortened when a row is too long.
    """

    task = "boolq"
    hub_path, hub_name = "super_glue", "boolq"
    split_rule = "halve_validation"
    template = "Reference document:\n{passage}\nQuestion:\n{question}"
    truncate_field = "passage"
    label_words = ("no", "yes")
    metric = "accuracy"
    max_new_tokens = 5


class COPA(TaskDataModule):
    """COPA (``super_glue``, config ``copa``; fields premise, choice1, choice2, question, label).

    ``[query]`` of the template is the row's ``question`` field ("cause" or "effect"). Label 0
    (choice1) = "1", 1 (choice2) = "2". Split (appendix B.1): original train (400) is train;
    the original validation (100) is permuted with ``seed`` and halved into dev (50) / test (50).
    """

    task = "copa"
    hub_path, hub_name = "super_glue", "copa"
    split_rule = "halve_validation"
    template = (
        "Premise:\n{premise}\nChoice 1: {choice1}\nChoice 2: {choice2}\nQuestion:\n{question}"
    )
    truncate_field = "premise"
    label_words = ("1", "2")
    metric = "accuracy"
    max_new_tokens = 5


class _SpanQA(TaskDataModule):
    """Shared parts of ReCoRD and SQuAD: context + question -> answer span (F1/EM)."""

    split_rule = "train_holdout"
    metric = "f1_em"
    max_new_tokens = 32
    paper_batch_size = 128

    def answers(self, row: dict[str, Any]) -> list[str]:
        """All gold answer texts of a row."""
        raise NotImplementedError

    def response(self, row: dict[str, Any]) -> str:
        """The first gold answer."""
        return self.answers(row)[0]

    def targets(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        """``text`` plus ``answers`` (all gold answers)."""
        return {"text": response, "answers": self.answers(row)}

    @staticmethod
    def _clean(field: str, values: Any) -> list[str]:
        if not isinstance(values, list):
            raise RowProblem(field, f"expected a list of answers, got {values!r}")
        texts = [v.strip() for v in values if isinstance(v, str) and v.strip()]
        if not texts:
            raise RowProblem(field, "no non-empty answer")
        return texts


class ReCoRD(_SpanQA):
    """ReCoRD (``super_glue``, config ``record``; fields passage, query, answers).

    ``[context]`` is the passage (with its ``@highlight`` lines), ``[query]`` the cloze query
    with ``@placeholder``; the response is the first gold answer, ``targets["answers"]`` all of
    them. Split (appendix B.1): 1,000 train rows (seeded permutation) are dev, the rest train; the
    original validation is test.
    """

    task = "record"
    hub_path, hub_name = "super_glue", "record"
    template = QA_TEMPLATE.format("{passage}", "{query}")
    truncate_field = "passage"

    def answers(self, row: dict[str, Any]) -> list[str]:
        """The ``answers`` list."""
        return self._clean("answers", row.get("answers"))


class SQuAD(_SpanQA):
    """SQuAD v1.1 (``rajpurkar/squad``; fields context, question, answers{text, answer_start}).

    Split (appendix B.2): 1,000 train rows (seeded permutation) are dev, the rest train; the
    original validation (10,570) is test. Response = first gold answer; ``targets["answers"]`` =
    all gold answer texts. Only the context is shortened when a row is too long.
    """

    task = "squad"
    hub_path = "rajpurkar/squad"
    template = QA_TEMPLATE.format("{context}", "{question}")
    truncate_field = "context"

    def answers(self, row: dict[str, Any]) -> list[str]:
        """``answers["text"]``."""
        answers = row.get("answers")
        if not isinstance(answers, dict):
            raise RowProblem("answers", f"expected {{'text': [...]}}, got {answers!r}")
        return self._clean("answers", answers.get("text"))
