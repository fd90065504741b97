"""Callbacks for what Lightning's built-ins do not do.

Dev evaluation cadence, early stopping (``EarlyStopping(monitor="val/loss", patience=10)``)
and best-adapter checkpointing (``ModelCheckpoint(monitor="val/loss")``) are Lightning's own;
these add generation metrics, the parameter-budget report, test files, PARADE diagnostics
and the pooler's attention maps.
"""

from callbacks.attention_maps import PoolerAttentionMaps
from callbacks.budget_report import ParameterBudgetReport
from callbacks.generation_eval import DevGenerationEval
from callbacks.mt_bench import MTBenchWriter
from callbacks.parade_diagnostics import ParadeDiagnostics, parade_statistics
from callbacks.result_files import PredictionWriter, TestReport

__all__ = [
    "DevGenerationEval", "MTBenchWriter", "ParameterBudgetReport", "ParadeDiagnostics",
    "PoolerAttentionMaps", "PredictionWriter", "TestReport",
    "parade_statistics",
]
