"""GLUE tasks: SST-2, RTE, QNLI (accuracy on the verbalised label)."""

from __future__ import annotations

from datamodules.task_datamodule import TaskDataModule

NLI_QUESTION = "Are sentence 1 and sentence 2 have entailment relation or not?"  # paper's wording
NLI_WORDS = ("entailment", "not entailment")  # GLUE ids: 0 = entailment, 1 = not_entailment


class SST2(TaskDataModule):
    """SST-2 sentiment (``nyu-mll/glue``, config ``sst2``; fields sentence, label).

    Split (appendix B.1, >10k rows): 1,000 rows of the original train, chosen by a permutation
    seeded with ``seed``, are dev; the remaining 66,349 are train; the original validation (872)
    is test. Label 0 = "negative", 1 = "positive".
    """

    task = "sst2"
    hub_path, hub_name = "nyu-mll/glue", "sst2"
    split_rule = "train_holdout"
    template = "{sentence}\nThe sentiment of the given sentence is:"
    truncate_field = "sentence"
    label_words = ("negative", "positive")
    metric = "accuracy"
    max_new_tokens = 5
    paper_batch_size = 128


class RTE(TaskDataModule):
    """RTE entailment (``nyu-mll/glue``, config ``rte``; fields sentence1, sentence2, label).

    Split (appendix B.1, <10k rows): original train (2,490) is train; the original validation
    (277) is permuted with ``seed`` and halved: the first 138 permuted rows are dev, the other
    139 test. Label 0 = "entailment", 1 = "not entailment". Only ``sentence1`` (the premise) is
    shortened when a row is too long.
    """

    task = "rte"
    hub_path, hub_name = "nyu-mll/glue", "rte"
    split_rule = "halve_validation"
    # The OCR of appendix C reads "sentence 2: [sentence1]", an obvious typo for [sentence2].
    template = "sentence 1: {sentence1}\nsentence 2: {sentence2}\n" + NLI_QUESTION
    truncate_field = "sentence1"
    label_words = NLI_WORDS
    metric = "accuracy"
    max_new_tokens = 8


class QNLI(TaskDataModule):
    """QNLI (``nyu-mll/glue``, config ``qnli``; fields question, sentence, label).

    Same template as RTE with sentence 1 = the question and sentence 2 = the context sentence (the
    GLUE field order); only the context sentence is shortened. Split (appendix B.1, >10k rows):
    1,000 train rows (seeded permutation) are dev, the rest train; the original validation
    (5,463) is test. Label 0 = "entailment", 1 = "not entailment".
    """

    task = "qnli"
    hub_path, hub_name = "nyu-mll/glue", "qnli"
    split_rule = "train_holdout"
    template = "sentence 1: {question}\nsentence 2: {sentence}\n" + NLI_QUESTION
    truncate_field = "sentence"
    label_words = NLI_WORDS
    metric = "accuracy"
    max_new_tokens = 8
    paper_batch_size = 128
