"""Instruction tuning: Alpaca (cleaned) for training, MT-Bench's 80 questions for predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datamodules.errors import RowProblem
from datamodules.task_datamodule import TaskDataModule


class Alpaca(TaskDataModule):
    """Alpaca cleaned (``yahma/alpaca-cleaned``; fields instruction, input, output).

    Appendix C has no Alpaca template, so the query is the instruction, followed by a newline
    and the input when the input is not empty (only the input is shortened when too long); the
    response is the output. No metric (train/val loss only; evaluation is MT-Bench).

    Split (ours; the paper uses all 51k rows for training): ``min(500, max(1, n // 20))`` rows of
    the train file, chosen by a permutation seeded with ``seed``, are dev (500 for the full set,
    50 for the 1,000-row demo of the local bundle); the rest is train. There is no test split.
    """

    task = "alpaca"
    hub_path = "yahma/alpaca-cleaned"
    split_rule = "train_holdout"
    splits = ("train", "dev")
    template = "{instruction}\n{input}"
    truncate_field = "input"
    response_field = "output"
    metric = None
    max_new_tokens = 256
    paper_batch_size = 128

    @classmethod
    def holdout_size(cls, n_train: int) -> int:
        """``min(500, max(1, n // 20))`` dev rows."""
        return min(500, max(1, n_train // 20))

    def prompt_fields(self, row: dict[str, Any]) -> dict[str, str]:
        """Instruction (required) and input (may be empty)."""
        return {
            "instruction": self.text(row, "instruction"),
            "input": self.text(row, "input", allow_empty=True) if row.get("input") else "",
        }

    def query(self, fields: dict[str, str]) -> str:
        """``instruction`` or ``instruction\\ninput``."""
        if fields["input"]:
            return self.template.format(**fields)
        return fields["instruction"]

    def _split_hint(self) -> str:
        return "Alpaca has train and dev only; evaluate instruction tuning with MTBench (predict)."


class MTBench(TaskDataModule):
    """MT-Bench questions (FastChat ``question.jsonl``: question_id, category, turns).

    Predict only: ``setup("predict")`` / ``predict_dataloader`` give the 80 questions, the first
    turn of each as the prompt. ``targets`` keep ``question_id``, ``category`` and ``turns``;
    ``text`` is the first reference answer when the file has one, else "". Source: the local file
    ``<data_dir>/mt_bench/question.jsonl`` only (no hub dataset). Reference answers for table 3's
    ROUGE-L are read by :func:`read_reference_answers` (``MTBenchWriter(references=…)``).
    """

    task = "mt_bench"
    split_rule = "predict_only"
    splits = ("test",)
    test_source = "question"
    template = "{turns}"  # filled with the first turn
    has_response = False
    metric = None
    max_new_tokens = 512

    def prompt_fields(self, row: dict[str, Any]) -> dict[str, str]:
        """The first turn."""
        return {"turns": self._turns(row)[0].strip()}

    def response(self, row: dict[str, Any]) -> str:
        """The first reference answer, or "" (MT-Bench is judged, not matched)."""
        reference = row.get("reference")
        if isinstance(reference, list) and reference and isinstance(reference[0], str):
            return reference[0]
        return ""

    def targets(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        """``text``, ``question_id``, ``category`` and ``turns``."""
        return {
            "text": response,
            "question_id": row.get("question_id"),
            "category": row.get("category"),
            "turns": self._turns(row),
        }

    @staticmethod
    def _turns(row: dict[str, Any]) -> list[str]:
        turns = row.get("turns")
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
            raise RowProblem("turns", "missing or not a list of texts")
        if not turns[0].strip():
            raise RowProblem("turns", "empty first turn")
        return [str(t) for t in turns]

    def _split_hint(self) -> str:
        return "MT-Bench is predict-only; train on Alpaca."


def _reference_text(row: dict[str, Any]) -> str | None:
    """The first-turn reference of one row of any supported layout (None: no such field)."""
    choices = row.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        turns = choices[0].get("turns")
        return turns[0] if isinstance(turns, list) and turns else None
    if "answer" in row:
        return row["answer"]
    reference = row.get("reference")
    if isinstance(reference, list) and reference:
        return reference[0]
    return reference if isinstance(reference, str) else None


def read_reference_answers(path: str | Path) -> dict[Any, str]:
    """Reference answers to MT-Bench's first turns, by ``question_id`` (table 3 scores ROUGE-L
    against GPT-4's answers).

    A jsonl file whose rows are any of: FastChat's model-answer layout
    (``model_answer/gpt-4.jsonl``: ``{"question_id", "choices": [{"turns": [first, …]}]}``),
    another run's ``answers.jsonl``
    (``{"question_id", "answer"}``) or a question file with references (``{"question_id",
    "reference": [first, …]}``). Only the first turn is used, as only it is answered. Errors
    name the file, the line and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MT-Bench reference answers: {path} does not exist (the "
                                "`references` option of callbacks.MTBenchWriter)")
    found: dict[Any, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "question_id" not in row:
            raise ValueError(f"{path}, line {number}: no 'question_id' field")
        text = _reference_text(row)
        if not isinstance(text, str):
            raise ValueError(f"{path}, line {number}: no reference text (expected choices[0]."
                             "turns[0], 'answer' or 'reference' holding text)")
        found[row["question_id"]] = text
    if not found:
        raise ValueError(f"{path}: no reference answers in the file")
    return found
