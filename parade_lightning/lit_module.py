"""``PeftLitModule``: a frozen backbone, one pluggable PEFT method, the paper's optimisation.

The module delegates everything method-specific to a :class:`methods.PeftMethod` chosen by
``class_path`` (``methods.Parade``, ``methods.LoRA``, ``mypkg.MyMethod``…). It trains with the
causal-LM loss on response tokens only (the datamodule sets labels to -100 on the prompt and
padding; :meth:`methods.PeftMethod.training_loss` projects only those positions onto the
vocabulary) and optimises as appendix E: AdamW, lr 1e-4, linear decay with 6 % warm-up.

Checkpoints hold adapter weights and hyper-parameters (plus the Trainer's optimizer, scheduler
and loop state), never the frozen backbone: :meth:`state_dict` returns the adapter only, and
:meth:`load_state_dict` loads it onto the freshly loaded backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

from datamodules.metrics import score
from methods.adapter_files import backbone_fingerprint
from methods.backbones import load_backbone
from methods.base import PeftMethod
from methods.parade import Parade
from methods.registry import method_from_config
from parade_lightning.distributed import gather_rows
from parade_lightning.generation import generate

_PREFIX = "model."


#: when dev generation runs: at ``every`` validation, or once for the ``tested`` checkpoint
DEV_GENERATION_MODES = ("every", "tested")


class PeftLitModule(L.LightningModule):
    """Fine-tune a causal LM with a PEFT method.

    Args:
        backbone: ``smollm2-135m``, a tiny test alias, a ``.gguf`` path, a local folder or a
            hub id (see :func:`parade_lightning.load_backbone`).
        method: the PEFT method (default: ``Parade()`` with the paper's settings).
        backbone_dtype: dtype of the frozen weights (``float32``, ``bfloat16``); adapter
            parameters always stay fp32.
        lr: AdamW learning rate (paper: 1e-4).
        weight_decay: AdamW weight decay (transformers' default 0.0).
        warmup_ratio: fraction of the optimisation steps spent in linear warm-up (paper: 0.06).
        scheduler: ``linear`` (warm-up then linear decay to 0, as the paper) or ``constant``.
        gradient_checkpointing: trade compute for activation memory in the backbone.
        num_beams: beam size of ``predict``/``test`` generation (paper: 3).
        max_new_tokens: generation length; ``None`` takes the datamodule's per-task value.
        generate_on_test: during ``test``, also generate answers and score them with the
            task's metric (``test/<metric>``; :class:`callbacks.TestReport` writes the files).
        compile_generation: ``test``/``predict`` (and dev evaluation) decode from a static KV
            cache through a compiled forward: ``true`` (inductor; CUDA graphs on a GPU) or a
            ``torch.compile`` backend name (see :func:`parade_lightning.generate`'s
            ``compile=`` and its limits; beam search is not compiled).
        attn_implementation: the backbone's attention kernel (``eager``, ``sdpa``, …; ``None``:
            transformers' default, ``sdpa``). On a CPU ``eager`` trains short sequences
            about a third faster (see :func:`methods.backbones.set_attention`).
        dev_generation: when :class:`callbacks.DevGenerationEval` generates on dev (unless
            the callback's ``at`` says otherwise): ``every`` validation run (appendix E), or
            only for the ``tested`` checkpoint, once, at the start of ``test``; the dev loss
            is still computed at every validation run, and it alone picks the checkpoint.
    """

    def __init__(
        self,
        backbone: str = "smollm2-135m",
        method: PeftMethod | None = None,
        backbone_dtype: str = "float32",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.06,
        scheduler: str = "linear",
        gradient_checkpointing: bool = False,
        num_beams: int = 3,
        max_new_tokens: int | None = None,
        generate_on_test: bool = True,
        compile_generation: bool | str = False,
        attn_implementation: str | None = None,
        dev_generation: str = "every",
    ) -> None:
        super().__init__()
        if dev_generation not in DEV_GENERATION_MODES:
            raise ValueError(f"model.dev_generation must be "
                             f"{' or '.join(map(repr, DEV_GENERATION_MODES))}, "
                             f"got {dev_generation!r}")
        if scheduler not in ("linear", "constant"):
            raise ValueError(f"scheduler must be 'linear' or 'constant', got {scheduler!r}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self.method = method_from_config(method) if method is not None else Parade()
        self.save_hyperparameters(ignore=["method"])
        self.hparams["method"] = self.method.to_config()  # plain data for checkpoints and logs
        self.model, self.tokenizer = load_backbone(
            backbone, dtype=backbone_dtype, attn_implementation=attn_implementation)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
            self.model.config.use_cache = False
        self.method.attach(self.model)
        self.model.train()  # backbone dropout as in HF/PEFT training; generate() toggles eval
        # what each evaluation found ("val"/"test": scored metrics; "val_runs": every dev run),
        # with the step and whether it ran inside fit; the CLI's run summary reads it
        self.eval_history: dict[str, list[dict[str, Any]]] = {"val": [], "test": [], "val_runs": []}

    # ------------------------------------------------------------------ forward and loss
    def forward(self, batch: Mapping[str, Any]) -> Any:
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "labels" in batch:
            kwargs["labels"] = batch["labels"]
        return self.model(**kwargs, **self.method.forward_inputs(batch), use_cache=False)

    def _loss(self, batch: Mapping[str, Any], stage: str) -> torch.Tensor:
        loss = self.method.training_loss(self.model, batch)
        size = batch["input_ids"].shape[0]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True,
                 batch_size=size, sync_dist=not on_step)
        return loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, "train")
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True,
                 batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.eval_history["val_runs"].append(self._when())

    def _when(self) -> dict[str, Any]:
        return {"step": self.global_step, "fitting": self.trainer.state.fn == "fit"}

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        """Test loss, and (``generate_on_test``) beam-search answers for the task metric."""
        loss = self._loss(batch, "test")
        if self.hparams.generate_on_test and "prompt_ids" in batch:
            self._test_rows += self.predict_step(batch, batch_idx)
        return loss

    def on_test_epoch_start(self) -> None:
        self._test_rows: list[dict[str, Any]] = []
        self.test_results: dict[str, Any] | None = None

    def on_test_epoch_end(self) -> None:
        """Score the generations with the datamodule's metric and log ``test/<metric>``."""
        # Under DDP every process scores all rows, so the logged value is the same everywhere.
        rows = gather_rows(self.trainer, self._test_rows)
        result = self.score_rows("test", rows)
        if result is not None:
            self.test_results = {**result, "num_beams": self.hparams.num_beams, "rows": rows}

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Generate for ``batch["prompt_ids"]`` (beam ``num_beams``); returns one dict a row."""
        return self.generate_rows(batch["prompt_ids"], batch.get("targets"), batch.get("index"))

    # ------------------------------------------------------------------ generate -> score -> log
    def generate_rows(self, prompt_ids, targets=None, indices=None,
                      **kwargs: Any) -> list[dict[str, Any]]:
        """Generate for token-id prompts; one row each: ``index, prompt, prediction, gold,
        target`` (what :meth:`score_rows` scores and the callbacks write)."""
        texts = self.generate(prompt_ids, **kwargs)
        targets = targets or [{}] * len(texts)
        indices = range(len(texts)) if indices is None else indices
        return [
            {"index": i, "prompt": self.tokenizer.decode(p), "prediction": t,
             "gold": g.get("text"), "target": g}
            for i, p, t, g in zip(indices, prompt_ids, texts, targets, strict=True)
        ]

    def score_rows(self, stage: str, rows: list[dict[str, Any]],
                   when: dict[str, Any] | None = None,
                   log_step: int | None = None) -> dict[str, Any] | None:
        """The one scoring step of dev evaluation and test: score ``rows`` with the task's
        metric (the datamodule's ``metric``), mark each row's ``score``/``correct``, log
        ``<stage>/<metric>`` and its extras. ``None`` when the task has no metric or no rows.

        ``when`` (``{"step", "fitting"}``) and ``log_step`` (the loggers' step) score rows
        for an evaluation that happened earlier, e.g. a fit validation whose dev generation
        was deferred to ``test`` (``dev_generation: tested``): the values go straight to the
        loggers at ``log_step`` instead of through ``self.log``."""
        metric = getattr(getattr(self.trainer, "datamodule", None), "metric", None)
        if metric is None or not rows:
            return None
        result = score(metric, [r["prediction"] for r in rows], [r["target"] for r in rows])
        for row, value in zip(rows, result.per_example, strict=True):
            row["score"], row["correct"] = value, value == 1.0
        values = {f"{stage}/{metric}": result.value,
                  **{f"{stage}/{key}": value for key, value in result.extras.items()}}
        if log_step is None:
            for i, (name, value) in enumerate(values.items()):
                self.log(name, value, prog_bar=stage == "val" and i == 0)
        else:
            for logger in self.loggers:
                logger.log_metrics({k: float(v) for k, v in values.items()}, step=log_step)
        self.eval_history.setdefault(stage, []).append(
            {**(when or self._when()), "metric": metric, "value": result.value})
        return {"metric": metric, "value": result.value, "extras": result.extras}

    def generate(self, prompts, **kwargs) -> list[str]:
        """:func:`parade_lightning.generate` with this module's beam size and length (defaults:
        one batch, no progress bar; any of them can be overridden)."""
        kwargs.setdefault("num_beams", self.hparams.num_beams)
        kwargs.setdefault("max_new_tokens", self.max_new_tokens())
        kwargs.setdefault("batch_size", len(prompts))
        kwargs.setdefault("progress", False)
        kwargs.setdefault("compile", self.hparams.compile_generation)
        return generate(self.model, self.tokenizer, prompts, **kwargs)

    def max_new_tokens(self) -> int:
        if self.hparams.max_new_tokens is not None:
            return self.hparams.max_new_tokens
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        return int(getattr(datamodule, "max_new_tokens", 32))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for _, p in self.method.named_adapter_parameters(self.model)]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr,
                                      weight_decay=self.hparams.weight_decay)
        total = self._total_steps()
        warmup = int(round(self.hparams.warmup_ratio * total))
        if self.hparams.scheduler == "linear":
            scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        else:
            scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_fit_start(self) -> None:
        self.method.on_fit_start(self.model, self._total_steps())

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the method's per-step hook (AdaLoRA's rank allocation)
        while the step's gradients are still there."""
        super().optimizer_step(*args, **kwargs)
        step = self.trainer.global_step  # the step just taken, from 0 (counted after this)
        self.method.on_optimizer_step(self.model, step, self._total_steps())

    def _total_steps(self) -> int:
        return max(int(self.trainer.estimated_stepping_batches), 1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["backbone_config"] = backbone_fingerprint(self.model)[0]  # checked on load
        state = self.method.training_state(self.model)
        if state:
            checkpoint["method_state"] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.method.load_training_state(self.model, checkpoint.get("method_state") or {})

    # ------------------------------------------------------------------ adapter-only state
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # noqa: D102
        state = self.method.adapter_state_dict(self.model)
        return {_PREFIX + name: tensor for name, tensor in state.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:  # noqa: D102
        foreign = [k for k in state_dict if not k.startswith(_PREFIX)]
        if foreign and strict:
            raise ValueError(f"unexpected keys in the adapter checkpoint: {foreign[:3]}")
        adapter = {k[len(_PREFIX):]: v for k, v in state_dict.items() if k.startswith(_PREFIX)}
        self.method.load_adapter_state_dict(self.model, adapter)
        return torch.nn.modules.module._IncompatibleKeys([], [])
