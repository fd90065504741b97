"""After ``test``: ``predictions.jsonl`` and ``metrics.json`` beside the logs.

The module generates with beam search during ``test_step`` and scores in
``on_test_epoch_end`` (see :class:`parade_lightning.PeftLitModule`); this callback writes what
it found, one JSON object a line (``index, prompt, prediction, gold, score, correct``) and
the headline numbers. With Lightning's ``Timer`` among the callbacks (``configs/base.yaml``)
``metrics.json`` also says how long the run took: ``seconds.fit`` (training with its dev
evaluations, summed over resumed attempts up to the checkpoint each one resumed from, since the
Timer's state travels in the checkpoint) and ``seconds.test``.
"""

from __future__ import annotations

import json

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, Timer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from callbacks._io import output_dir, write_jsonl
from methods.counting import parameter_budget
from parade_lightning.distributed import gather_rows


class TestReport(L.Callback):
    """Write the test predictions and metrics.

    Args:
        output_dir: where to write (None: the trainer's log dir).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, output_dir: str | None = None) -> None:
        self.output_dir = output_dir
        self._fit_seconds: float | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # read now: testing the best checkpoint reloads the Timer's state from it, which
        # replaces the offset this fit resumed with by the tested checkpoint's. on_fit_end,
        # not on_train_end: a run resumed from a checkpoint at max_steps skips the training
        # loop (no on_train_end) yet its earlier attempts' time is in the restored offset
        timer = _timer(trainer)
        self._fit_seconds = None if timer is None else round(timer.time_elapsed("train"), 3)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = getattr(pl_module, "test_results", None)
        if not results:
            return
        out = output_dir(trainer, self.output_dir)
        write_jsonl(out / "predictions.jsonl", results["rows"])
        datamodule = trainer.datamodule
        budget = parameter_budget(pl_module.model)
        metrics = {
            "task": getattr(datamodule, "task", None),
            "method": pl_module.hparams["method"],
            "backbone": pl_module.hparams.get("backbone"),
            "metric": results["metric"],
            "value": results["value"],
            "extras": results["extras"],
            "test_loss": _float(trainer.callback_metrics.get("test/loss")),
            "num_examples": len(results["rows"]),
            "num_beams": results["num_beams"],
            "trainable_parameters": budget.trainable,
            "total_parameters": budget.total,
            "ckpt_path": trainer.ckpt_path,
            "global_step": trainer.global_step,
        }
        timer = _timer(trainer)
        if timer is not None:
            metrics["seconds"] = {"fit": self._fit_seconds,
                                  "test": round(timer.time_elapsed("test"), 3)}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        rank_zero_info(f"test {results['metric']} = {results['value']:.4f} -> {out}/metrics.json")


def _timer(trainer: L.Trainer) -> Timer | None:
    return next((c for c in trainer.callbacks if isinstance(c, Timer)), None)


class PredictionWriter(BasePredictionWriter):
    """``parade predict``: write every generation to ``predictions.jsonl`` (one row a line).

    Args:
        output_dir: where to write (None: the trainer's log dir).
        filename: the file's name.
    """

    def __init__(self, output_dir: str | None = None,
                 filename: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="epoch")
        self.output_dir, self.filename = output_dir, filename

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        rows = gather_rows(trainer, [row for batch in predictions for row in batch])
        if not trainer.is_global_zero:
            return
        out = output_dir(trainer, self.output_dir)
        write_jsonl(out / self.filename, rows)
        rank_zero_info(f"predictions -> {out / self.filename}")


def _float(value) -> float | None:
    return None if value is None else float(value)
