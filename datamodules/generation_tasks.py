"""Generation tasks: E2E NLG (ROUGE-L) and GSM8K (final-answer accuracy)."""

from __future__ import annotations

from typing import Any

from datamodules.errors import RowProblem
from datamodules.metrics.gsm8k import extract_gsm8k_number, parse_number
from datamodules.task_datamodule import TaskDataModule
from datamodules.task_spec import RawRow


def gsm8k_answer_number(answer: str) -> str | None:
    """The gold final answer: the number on the ``#### <number>`` line, read by the metric's
    own parser (so every kept row can be scored); None without such a line or number."""
    if "####" not in answer:
        return None
    number = extract_gsm8k_number(answer)
    return number if number is not None and parse_number(number) is not None else None


class E2E(TaskDataModule):
    """E2E NLG (``tuetschek/e2e_nlg``; fields meaning_representation, human_reference).

    Split (appendix B.3): the published train / validation / test (42,061 / 4,672 / 4,693 rows).
    Train keeps one example per reference. Dev and test are grouped by meaning representation
    (first-appearance order): one example per MR whose response is its first reference and whose
    ``targets["references"]`` holds all its references (ROUGE-L against all of them).
    """

    task = "e2e"
    hub_path = "tuetschek/e2e_nlg"
    split_rule = "native"
    template = (
        "Reference:\n{meaning_representation}\n"
        "Generate a customer review following the given reference."
    )
    truncate_field = "meaning_representation"
    response_field = "human_reference"
    metric = "rouge_l"
    max_new_tokens = 64
    paper_batch_size = 128

    def group_rows(self, split: str, rows: list[RawRow]) -> list[RawRow]:
        """Dev/test: one row per MR with ``references`` (rows of a bad MR field kept as is)."""
        if split == "train":
            return rows
        groups: dict[str, RawRow] = {}
        out: list[RawRow] = []
        for raw in rows:
            mr = raw.data.get("meaning_representation")
            ref = raw.data.get("human_reference")
            if not isinstance(mr, str) or not mr.strip():
                out.append(raw)  # reported as a bad row later
                continue
            if mr not in groups:
                groups[mr] = RawRow(raw.source, raw.row, {**raw.data, "references": []})
                out.append(groups[mr])
            if isinstance(ref, str) and ref.strip():
                groups[mr].data["references"].append(ref.strip())
        for group in groups.values():  # response = first non-empty reference
            if group.data["references"]:
                group.data["human_reference"] = group.data["references"][0]
        return out

    def targets(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        """``text`` plus ``references`` (all references of the MR; train: its own)."""
        refs = row.get("references") or [response]
        return {"text": response, "references": list(refs)}


class GSM8K(TaskDataModule):
    """GSM8K (``openai/gsm8k``, config ``main``; fields question, answer).

    Split (appendix B.4): 500 rows of the original train (permutation seeded with ``seed``) are
    dev, the remaining 6,973 train; the original test (1,319) is test. The response is the full
    reasoning ending in ``#### N``; ``targets["answer_number"]`` is ``N`` without commas. The
    question is never shortened (a row that does not fit is a bad row).
    """

    task = "gsm8k"
    hub_path, hub_name = "openai/gsm8k", "main"
    split_rule = "train_holdout"
    holdout = 500
    test_source = "test"
    # Appendix C (typo "quesition" kept); its [ref] placeholder is the question.
    template = (
        "Answer the following math quesition:\n{question}\nInstruction: please think step by step."
    )
    response_field = "answer"
    metric = "gsm8k_accuracy"
    max_new_tokens = 256

    def targets(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        """``text`` plus ``answer_number``."""
        number = gsm8k_answer_number(response)
        if not number:
            raise RowProblem("answer", "no final '#### <number>' line")
        return {"text": response, "answer_number": number}
