"""Generation-based task metrics, computed on generated text (paper appendix B.7).

Every task is scored on what the model *generates*, never on logits: label words for the
classification tasks, spans for SQuAD/ReCoRD, text for E2E, solutions for GSM8K and SQL
for WikiSQL. One uniform API serves the evaluation callbacks::

    from parade_lightning.metrics import METRICS, TASK_METRICS, score

    result = score("f1_em", ["Denver Broncos"], [{"text": "Denver Broncos",
                                                 "answers": ["The Denver Broncos"]}])
    result.value        # 1.0: headline number, a fraction in [0, 1] (tables show x100)
    result.per_example  # [1.0]
    result.extras       # {"f1": 1.0, "em": 1.0}

========================  ==========================  ===========================
metric                    tasks                       target keys (plus "text")
========================  ==========================  ===========================
``accuracy``              SST-2, RTE, QNLI, BoolQ,    ``label_word``
                          COPA
``f1_em``                 SQuAD v1.1, ReCoRD          ``answers``
``rouge_l``               E2E                         ``references``
``gsm8k_accuracy``        GSM8K                       ``answer_number``
``wikisql_execution``     WikiSQL                     ``sql``, ``table``
========================  ==========================  ===========================

:class:`GenerationMetric` wraps any of them as a ``torchmetrics.Metric`` for batched,
multi-process accumulation.
"""

from parade_lightning.metrics.core import ExampleScore, MetricSpec, ScoreResult
from parade_lightning.metrics.gsm8k import extract_gsm8k_number, parse_number
from parade_lightning.metrics.registry import (
    METRICS,
    TASK_METRICS,
    get_metric,
    higher_is_better,
    score,
)
from parade_lightning.metrics.streaming import GenerationMetric
from parade_lightning.metrics.text import (
    first_line,
    normalize_answer,
    normalize_squad_answer,
    squad_exact_match,
    squad_f1,
)
from parade_lightning.metrics.wikisql import (
    AGG_OPS,
    COND_OPS,
    TABLE_NAME,
    canonical_result,
    clean_predicted_sql,
    open_wikisql_database,
    render_wikisql_query,
    run_wikisql_query,
    wikisql_column_names,
)

__all__ = [
    "AGG_OPS",
    "COND_OPS",
    "METRICS",
    "TABLE_NAME",
    "TASK_METRICS",
    "ExampleScore",
    "GenerationMetric",
    "MetricSpec",
    "ScoreResult",
    "canonical_result",
    "clean_predicted_sql",
    "extract_gsm8k_number",
    "first_line",
    "get_metric",
    "higher_is_better",
    "normalize_answer",
    "normalize_squad_answer",
    "open_wikisql_database",
    "parse_number",
    "render_wikisql_query",
    "run_wikisql_query",
    "score",
    "squad_exact_match",
    "squad_f1",
    "wikisql_column_names",
]
