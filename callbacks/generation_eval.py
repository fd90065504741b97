"""Generation-based dev evaluation at every validation run (appendix E: every 200 steps).

Lightning's ``val_check_interval: 200`` decides *when*; this callback adds what the loss
alone does not tell: it generates answers for a sample of the dev set (greedy, as the paper's
dev protocol), scores them with the task's metric (appendix B.7), logs ``val/<metric>`` and
writes a few generations to TensorBoard as text.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from parade_lightning.metrics import score


def _markdown_samples(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| prompt (end) | generated | gold |", "|---|---|---|"]
    for prompt, text, gold in rows:
        cells = [c.replace("|", "\\|").replace("\n", " ") for c in (prompt[-200:], text, gold)]
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
        metric = getattr(datamodule, "metric", None)
        if trainer.sanity_checking or metric is None:
            return
        examples = datamodule.dev_examples(limit=self.num_examples)
        length = {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens else {}
        texts = pl_module.generate([e["prompt_ids"] for e in examples], num_beams=self.num_beams,
                                   batch_size=self.batch_size, progress=None, **length)
        result = score(metric, texts, [e["targets"] for e in examples])
        pl_module.log(f"val/{metric}", result.value, prog_bar=True)
        for key, value in result.extras.items():
            pl_module.log(f"val/{key}", value)
        rows = [
            (pl_module.tokenizer.decode(e["prompt_ids"]), t, e["targets"].get("text", ""))
            for e, t in zip(examples[: self.num_text_samples], texts, strict=False)
        ]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("val/generations", _markdown_samples(rows),
                                           global_step=trainer.global_step)
