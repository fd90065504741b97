"""The metric registry: ``METRICS`` (name -> implementation) and ``score``.

Which metric a task reports (appendix B.7) is said once, by the task's ``metric`` attribute
(:class:`datamodules.task_spec.TaskSpec`); this registry only knows the implementations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import fsum
from typing import Any

from datamodules.metrics.core import MetricSpec, ScoreResult
from datamodules.metrics.gsm8k import gsm8k_accuracy_example
from datamodules.metrics.sql_execution import BOUND_EXTRA, wikisql_execution_example
from datamodules.metrics.text import accuracy_example, f1_em_example, rouge_l_example

METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "accuracy",
            accuracy_example,
            description="exact match of the normalised generated label word",
        ),
        MetricSpec(
            "f1_em",
            f1_em_example,
            extra_keys=("f1", "em"),
            description="mean of SQuAD v1.1 token F1 and exact match (max over answers)",
        ),
        MetricSpec(
            "rouge_l",
            rouge_l_example,
            extra_keys=("rouge_l_precision", "rouge_l_recall"),  # prefixed: logged as val/<key>
            description="ROUGE-L F-measure, best reference per example (HF Evaluate style)",
        ),
        MetricSpec(
            "gsm8k_accuracy",
            gsm8k_accuracy_example,
            description="final number (after '####', else the last one) equals the answer",
        ),
        MetricSpec(
            "wikisql_execution",
            wikisql_execution_example,
            extra_keys=(BOUND_EXTRA,),
            description="generated SQL executes to the gold query's result multiset",
        ),
    )
}
"""Every generation metric by name. Values are fractions in ``[0, 1]``; all higher-is-better."""

def get_metric(name: str) -> MetricSpec:
    """Look up a metric, with a helpful error listing the known names."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}") from None


def score(
    metric: str, predictions: Sequence[str], targets: Sequence[Mapping[str, Any]]
) -> ScoreResult:
    """Score generated texts against their targets with a registered metric.

    Predictions are the decoded responses only (prompt removed, special tokens skipped).
    A bad prediction never raises: it scores 0. A malformed *target* (missing keys, no gold
    answer) raises, since it is a data bug that would silently skew the number.

    Args:
        metric: a key of :data:`METRICS` (a task's ``metric`` names one).
        predictions: one generated string per example.
        targets: one dict per example; every dict has ``"text"`` (the gold response) plus
            the metric's keys: ``label_word`` (accuracy), ``answers`` (f1_em),
            ``references`` (rouge_l), ``answer_number`` (gsm8k_accuracy), ``sql`` and
            ``table`` (wikisql_execution).

    Returns:
        A :class:`ScoreResult` whose ``value`` is the mean per-example score in ``[0, 1]``.

    Raises:
        ValueError: unknown metric, no examples, or as many predictions as targets not given.

    Examples:
        >>> score("accuracy", ["Entailment.", "entailment"],
        ...       [{"text": "not entailment", "label_word": "not entailment"},
        ...        {"text": "entailment", "label_word": "entailment"}]).value
        0.5
    """
    spec = get_metric(metric)
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
    if not predictions:
        raise ValueError(f"no examples to score with {metric!r}")
    examples = [spec.score_example(p, t) for p, t in zip(predictions, targets, strict=True)]
    n = len(examples)
    return ScoreResult(
        metric=spec.name,
        value=fsum(e.value for e in examples) / n,
        per_example=[e.value for e in examples],
        extras={k: fsum(e.extras[k] for e in examples) / n for k in spec.extra_keys},
    )
