"""Pooler attention maps at dev evaluation (TensorBoard images, optionally PNG files).

At each validation run (after the sanity check) the PARADE pooler's weights over the prompt
tokens of a few fixed dev examples are drawn as heat maps (tokens x (layer, capsule); see
:mod:`parade_lightning.pooler_maps`) and logged as ``val/pooler_map_<i>`` images, so one can
watch what the capsules learn to read. Nothing happens for other methods or PARADE-1's
last-token pooler (which has no weights).
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks._io import output_dir
from methods.parade import Parade
from parade_lightning.attention_plot import draw_pooler_map
from parade_lightning.pooler_maps import pooler_attention_maps


class PoolerAttentionMaps(L.Callback):
    """Draw the pooler's attention over dev prompts at each dev evaluation.

    Args:
        num_examples: dev examples to draw (a fixed, seeded sample: the same every time).
        layers: decoder layers (0-based; None: four evenly spaced from layer 0).
        max_tokens: draw only the last this many prompt tokens (the end of the query, after
            the chat template's fixed system prompt; None: all).
        save_png: also write ``<log dir>/pooler_maps/step<step>_<i>.png``.
    """

    def __init__(self, num_examples: int = 2, layers: list[int] | None = None,
                 max_tokens: int | None = 64, save_png: bool = False) -> None:
        self.num_examples, self.layers = num_examples, layers
        self.max_tokens, self.save_png = max_tokens, save_png

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        method = getattr(pl_module, "method", None)
        if (trainer.sanity_checking or not trainer.is_global_zero
                or not isinstance(method, Parade) or method.pooler == "last"):
            return
        examples = trainer.datamodule.dev_examples(limit=self.num_examples)
        if not examples:
            return
        maps = pooler_attention_maps(pl_module.model, pl_module.tokenizer,
                                     [e["prompt_ids"] for e in examples], self.layers)
        folder = output_dir(trainer) / "pooler_maps" if self.save_png else None
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        for i in range(len(examples)):
            path = folder / f"step{trainer.global_step}_{i}.png" if folder else None
            rgb = draw_pooler_map(maps, i, path, self.max_tokens, tail=True)
            for writer in writers:
                writer.add_image(f"val/pooler_map_{i}", rgb, trainer.global_step,
                                 dataformats="HWC")
