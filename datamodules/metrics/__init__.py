"""Generation-based task metrics, computed on generated text (paper appendix B.7).

Every task is scored on what the model *generates*, never on logits: label words for the
classification tasks, spans for SQuAD/ReCoRD, text for E2E, solutions for GSM8K and SQL
for WikiSQL. One uniform API serves the evaluation callbacks::

    from datamodules.metrics import METRICS, score

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
                          (extra ``sql_bound_tripped``)
========================  ==========================  ===========================

Which task uses which metric is declared once, on the task (``TaskSpec.metric``); the table
above only summarises the shipped tasks.
"""

from datamodules.metrics.core import ExampleScore, MetricSpec, ScoreResult
from datamodules.metrics.gsm8k import extract_gsm8k_number, parse_number
from datamodules.metrics.scoring import (
    METRICS,
    get_metric,
    score,
)
from datamodules.metrics.sql_execution import (
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
from datamodules.metrics.text import (
    first_line,
    normalize_answer,
    normalize_squad_answer,
    squad_exact_match,
    squad_f1,
)

__all__ = [
    "AGG_OPS",
    "COND_OPS",
    "METRICS",
    "TABLE_NAME",
    "ExampleScore",
    "MetricSpec",
    "ScoreResult",
    "canonical_result",
    "clean_predicted_sql",
    "extract_gsm8k_number",
    "first_line",
    "get_metric",
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
