"""Generation-based dev evaluation at every validation run (appendix E: every 200 steps).

Lightning's ``val_check_interval: 200`` decides *when*; this callback adds what the loss
alone does not tell: it generates answers for a sample of the dev set (greedy, as the paper's
dev protocol) and hands them to the module's one scoring step
(:meth:`parade_lightning.PeftLitModule.score_rows`, shared with ``test``), which logs
``val/<metric>``; a few generations go to TensorBoard as text.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


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
    """

    def __init__(self, num_examples: int | None = 200, num_beams: int = 1,
                 max_new_tokens: int | None = None, batch_size: int = 16,
                 num_text_samples: int = 4) -> None:
        self.num_examples, self.num_beams = num_examples, num_beams
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.num_text_samples = num_text_samples

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if trainer.sanity_checking or getattr(datamodule, "metric", None) is None:
            return
        examples = datamodule.dev_examples(limit=self.num_examples)
        length = {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens else {}
        rows = pl_module.generate_rows(
            [e["prompt_ids"] for e in examples], [e["targets"] for e in examples],
            num_beams=self.num_beams, batch_size=self.batch_size, progress=None, **length)
        pl_module.score_rows("val", rows)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("val/generations",
                                           _markdown_samples(rows[: self.num_text_samples]),
                                           global_step=trainer.global_step)
