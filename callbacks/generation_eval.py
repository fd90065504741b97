"""Generation-based dev evaluation at every validation run (appendix E: every 200 steps).

Lightning's ``val_check_interval: 200`` decides *when*; this callback adds what the loss
alone does not tell: it generates answers for a sample of the dev set (greedy, as the paper's
dev protocol) and hands them to the module's one scoring step
(:meth:`parade_lightning.PeftLitModule.score_rows`, shared with ``test``), which logs
``val/<metric>``; a few generations go to TensorBoard as text.

Generation is most of a validation run's cost on generation tasks (on this CPU, E2E's 200
dev rows take about 3.7 minutes against seconds for the dev loss). With ``at: tested`` (or
the module's ``dev_generation: tested``) fit validations compute the dev loss only, which
alone picks the checkpoint (``ModelCheckpoint(monitor="val/loss")``), and the dev metric is
generated once, for the checkpoint that ``test`` loads, at the start of ``test``: it is
logged as ``val/<metric>`` at that validation's logger step, next to its ``val/loss``, so
"the dev metric at the lowest dev loss" reads the same as with ``at: every``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from methods.adapter_files import load_checkpoint_file
from parade_lightning.lit_module import DEV_GENERATION_MODES


def _markdown_samples(rows: list[dict]) -> str:
    lines = ["| prompt (end) | generated | gold |", "|---|---|---|"]
    for row in rows:
        cells = [str(c or "").replace("|", "\\|").replace("\n", " ")
                 for c in (row["prompt"][-200:], row["prediction"], row["gold"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class DevGenerationEval(L.Callback):
    """Generate on the dev set at each validation run and log ``val/<metric>``.

    Args:
        num_examples: dev examples to generate for (a fixed, seeded sample; None = all).
        num_beams: beam size (paper: greedy on dev).
        max_new_tokens: generation length (None: the module's, i.e. ``model.max_new_tokens``
            or else the task's).
        batch_size: prompts per generate call.
        num_text_samples: generations written to TensorBoard as text.
        at: ``every`` validation run, or once for the ``tested`` checkpoint (at the start of
            ``test``; see the module docstring); ``None``: the module's ``dev_generation``
            (default ``every``).
    """

    def __init__(self, num_examples: int | None = 200, num_beams: int = 1,
                 max_new_tokens: int | None = None, batch_size: int = 16,
                 num_text_samples: int = 4, at: str | None = None) -> None:
        if at is not None and at not in DEV_GENERATION_MODES:
            raise ValueError(f"DevGenerationEval: at must be one of {DEV_GENERATION_MODES} or "
                             f"None, got {at!r}")
        self.num_examples, self.num_beams = num_examples, num_beams
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.num_text_samples, self.at = num_text_samples, at
        # tested mode: {global step: logger step} of the fit validations whose generation
        # was deferred (for a test of the last weights, which has no checkpoint to read)
        self._deferred: dict[int, int] = {}

    def mode(self, pl_module: L.LightningModule) -> str:
        return self.at or getattr(pl_module, "hparams", {}).get("dev_generation", "every")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or getattr(trainer.datamodule, "metric", None) is None:
            return
        if self.mode(pl_module) == "tested" and trainer.state.fn == "fit":
            # the loss is logged at this step; the metric waits for test (if this is tested)
            self._deferred[trainer.global_step] = trainer.fit_loop.epoch_loop._batches_that_stepped
            return
        self._evaluate(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.mode(pl_module) != "tested" or getattr(trainer.datamodule, "metric", None) is None:
            return
        step, log_step = self._tested_step(trainer)
        self._evaluate(trainer, pl_module, when={"step": step, "fitting": True},
                       log_step=log_step)

    def _tested_step(self, trainer: L.Trainer) -> tuple[int, int]:
        """The global step of the weights ``test`` evaluates and the logger step at which
        their validation logged ``val/loss``: from the checkpoint ``test`` loaded (its fit
        loop's state is saved at that validation), else the last weights'."""
        path = trainer.ckpt_path
        if path and Path(path).is_file():
            checkpoint = load_checkpoint_file(path)
            epoch_loop = checkpoint.get("loops", {}).get("fit_loop", {}).get(
                "epoch_loop.state_dict", {})
            step = int(checkpoint.get("global_step", 0))
            return step, int(epoch_loop.get("_batches_that_stepped", step))
        step = trainer.global_step
        return step, self._deferred.get(step, trainer.fit_loop.epoch_loop._batches_that_stepped)

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule,
                  when: dict | None = None, log_step: int | None = None) -> None:
        examples = trainer.datamodule.dev_examples(limit=self.num_examples)
        length = {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens else {}
        rows = pl_module.generate_rows(
            [e["prompt_ids"] for e in examples], [e["targets"] for e in examples],
            num_beams=self.num_beams, batch_size=self.batch_size, progress=None, **length)
        pl_module.score_rows("val", rows, when=when, log_step=log_step)
        step = trainer.global_step if when is None else when["step"]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("val/generations",
                                           _markdown_samples(rows[: self.num_text_samples]),
                                           global_step=step)
