"""Parameter-budget report at fit start: printed, in TensorBoard, and as JSON beside the logs."""

from __future__ import annotations

import json

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from callbacks._io import output_dir
from methods.counting import parameter_budget


class ParameterBudgetReport(L.Callback):
    """Report trainable / total parameters (and per role, group and layer) when fit starts.

    Args:
        per_layer: include the per-layer rows in the printed table.
        filename: JSON file written into the trainer's log dir.
    """

    def __init__(self, per_layer: bool = False, filename: str = "budget.json") -> None:
        self.per_layer, self.filename = per_layer, filename

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        budget = parameter_budget(pl_module.model)
        table = budget.table(per_layer=self.per_layer)
        rank_zero_info(f"Parameter budget\n{table}")
        numbers = {"budget/trainable": budget.trainable, "budget/total": budget.total,
                   "budget/percent": budget.percent}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("budget", table, global_step=0)
                # One HPARAMS entry per run: the run's hyper-parameters with the budget as its
                # metrics, so runs can be compared by size (base.yaml turns off Lightning's
                # placeholder ``hp_metric``). Also lands in the run's hparams.yaml.
                params = dict(pl_module.hparams)
                if trainer.datamodule is not None:
                    params.update(getattr(trainer.datamodule, "hparams", {}))
                logger.log_hyperparams({**params, **numbers}, metrics=numbers, step=0)
            else:
                logger.log_metrics(numbers, step=0)
        (output_dir(trainer) / self.filename).write_text(json.dumps(budget.to_dict(), indent=2))
