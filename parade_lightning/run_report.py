"""What a run did, said by the ``parade`` CLI: the schedule check, the default log folder name
and the final summary.

* :func:`validation_never_runs`: ``max_steps`` ends training before the first dev evaluation
  (e.g. ``--trainer.max_steps 10`` with ``val_check_interval: 20``): no dev metric, no best
  checkpoint, test on the last weights; the CLI warns before training starts.
* :func:`slow_cpu_bf16`: bf16 (autocast or stored weights) on a CPU without a native bf16 path,
  where it is many times slower than fp32; the CLI warns before training starts.
* :func:`default_logger_name`: ``<method>/<task>`` (``runs/lora/rte/version_0``) when the
  TensorBoard logger's ``name`` is null (``configs/base.yaml``).
* :func:`summarise` / :func:`format_summary`: at the end of ``fit`` (after the test that
  ``test_after_fit`` runs) and of ``test``: dev metric before training (``validate_before_fit``),
  best and last dev evaluation, the test metric and which weights were tested (the best
  checkpoint, a given checkpoint, or the last / freshly initialised weights), the files
  written and the TensorBoard command.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import lightning as L
import torch

SWEEP_HELP = ("Grids of `parade fit` runs: plan, run (local or SLURM), run-one, status, report, "
              "budget (`parade sweep --help`; docs/sweeps.md).")
_FILES = ("metrics.json", "predictions.jsonl", "budget.json", "config.yaml", "hparams.yaml")


def validation_never_runs(trainer: L.Trainer) -> str | None:
    """A message when the dev set will never be evaluated before ``max_steps`` (else None)."""
    steps = trainer.max_steps
    interval = trainer.val_check_interval
    if (steps is None or steps <= 0 or not isinstance(interval, int) or isinstance(interval, bool)
            or trainer.check_val_every_n_epoch is not None or trainer.limit_val_batches == 0):
        return None
    batches = steps * trainer.accumulate_grad_batches
    if interval <= batches:
        return None
    return (
        f"validation never runs: trainer.val_check_interval is {interval} batches but training "
        f"stops after max_steps {steps} ({batches} batches with accumulate_grad_batches "
        f"{trainer.accumulate_grad_batches}). There will be no dev metric and no best checkpoint,"
        f" and test uses the last weights. Set --trainer.val_check_interval {batches} (or less),"
        " or raise max_steps."
    )


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has a bf16 path on this CPU (AVX-512 or AMX); True when unknown."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def slow_cpu_bf16(trainer: L.Trainer, model: Any) -> str | None:
    """A message when a CPU run computes in bf16 (``trainer.precision`` bf16, or the frozen
    weights stored in bf16) on a CPU without a native bf16 path (else None).

    Measured on a 2-core AMD EPYC (AVX2, no AVX-512): one SmolLM2 training step of 8 x 74
    tokens took about 100 s under ``bf16-mixed`` against 5.1 s in fp32
    (``docs/results/quality/README.md``, "Cost"); on earlier sessions' machine bf16 was a
    little faster than fp32 instead."""
    if trainer.strategy.root_device.type != "cpu" or cpu_has_fast_bf16():
        return None
    precision = str(trainer.precision)
    stored = next((p.dtype for p in model.parameters() if not p.requires_grad), None)
    if not precision.startswith("bf16") and stored != torch.bfloat16:
        return None
    what = [f"trainer.precision is {precision}"] if precision.startswith("bf16") else []
    what += ["model.backbone_dtype is bfloat16"] if stored == torch.bfloat16 else []
    return (f"{' and '.join(what)}, but this CPU has no native bf16 path (no AVX-512 or AMX): "
            "bf16 matrix products are emulated and a training step can be 20x slower than in "
            "fp32 (measured: about 100 s against 5.1 s for one SmolLM2 step of 8 x 74 tokens). "
            "Use --trainer.precision 32-true (and --model.backbone_dtype float32).")


def default_logger_name(method: Any, data: Any) -> str:
    """``<method class, lower case>/<task>`` from the parsed ``model.method`` and ``data``
    (``lora/rte``; ``parade`` when no method is given)."""
    path = getattr(method, "class_path", None) or (method if isinstance(method, str) else "")
    name = str(path).rsplit(".", 1)[-1].lower() or "parade"
    task = _task_name(data)
    return f"{name}/{task}" if task else name


def _task_name(data: Any) -> str | None:
    init = getattr(data, "init_args", None)
    if init is not None and init.get("task"):
        return str(init.get("task"))
    module, _, name = str(getattr(data, "class_path", "") or "").rpartition(".")
    try:
        return getattr(importlib.import_module(module), name).task or None
    except (ImportError, AttributeError, ValueError):
        return None


def share_generation_length(config: Any) -> None:
    """One ``max_new_tokens`` for model and data: the model's when set (it wins), else the
    data's (``data.init_args.max_new_tokens``, e.g. a YAML task's declaration)."""
    if config is None:
        return
    model, data = config.get("model"), getattr(config.get("data"), "init_args", None)
    if model is None or data is None or "max_new_tokens" not in data:
        return
    if model.get("max_new_tokens") is not None:
        data.max_new_tokens = model.max_new_tokens
    elif data.get("max_new_tokens") is not None:
        model.max_new_tokens = data.max_new_tokens


def run_folder(trainer: L.Trainer) -> Path | None:
    """The folder the run writes to (the first logger's log dir)."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    folder = getattr(logger, "log_dir", None) or logger.save_dir
    return Path(folder) if folder else None


def summarise(trainer: L.Trainer, model: Any, stage: str) -> dict[str, Any]:
    """What the run did, from the module's evaluation history and the trainer's state."""
    history = getattr(model, "eval_history", {})
    scored = [e for e in history.get("val", []) if e.get("value") is not None]
    dev = [e for e in scored if e["fitting"]]
    before = next((e for e in scored if not e["fitting"] and e["step"] == 0), None)
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
    tested = getattr(model, "test_results", None) if history.get("test") else None
    folder = run_folder(trainer)
    files = [str(folder / f) for f in _FILES if folder and (folder / f).is_file()]
    if folder and (folder / "checkpoints").is_dir():
        files += sorted(str(p) for p in (folder / "checkpoints").glob("*.ckpt"))
    save_dir = getattr(trainer.loggers[0], "save_dir", None) if trainer.loggers else None
    return {
        "stage": stage,
        "global_step": trainer.global_step,
        "dev_before": before,
        "dev_best": max(dev, key=lambda e: e["value"], default=None),
        "dev_last": dev[-1] if dev else None,
        "dev_evaluations": sum(run["fitting"] for run in history.get("val_runs", [])),
        "best_checkpoint": best or None,
        "test": None if not tested else {
            "metric": tested["metric"], "value": tested["value"], "rows": len(tested["rows"]),
            "weights": trainer.ckpt_path or None},
        "folder": str(folder) if folder else None,
        "files": files,
        "tensorboard": f"tensorboard --logdir {save_dir}" if save_dir else None,
    }


def _dev(entry: dict[str, Any] | None) -> str:
    return "–" if entry is None else f"{entry['value']:.4f} (step {entry['step']})"


def format_summary(summary: dict[str, Any]) -> str:
    """The printed form: one line each for dev, test, files and TensorBoard."""
    lines = [f"Run summary ({summary['stage']}, {summary['global_step']} training steps)"]
    before, best, last = summary["dev_before"], summary["dev_best"], summary["dev_last"]
    metric = next((e["metric"] for e in (before, best, last) if e), None)
    if summary["stage"] == "fit":
        if not summary["dev_evaluations"]:
            evaluated = "no dev evaluation ran during training (so no best checkpoint)"
        elif best is None:
            evaluated = f"{summary['dev_evaluations']} evaluations (loss only: no task metric)"
        else:
            evaluated = (f"best {_dev(best)}, last {_dev(last)} "
                         f"({summary['dev_evaluations']} evaluations)")
        zero = f"before training {_dev(before)} -> " if before else ""
        lines.append(f"  dev {metric or 'metric'}: {zero}{evaluated}")
        if summary["best_checkpoint"]:
            lines.append(f"  best checkpoint (lowest val/loss): {summary['best_checkpoint']}")
    test = summary["test"]
    if test is not None:
        weights = test["weights"] or (
            "the last weights" if summary["stage"] == "fit" else
            "the weights as built, no checkpoint (zero-shot when the method starts as identity)")
        lines.append(f"  test {test['metric']}: {test['value']:.4f} on {test['rows']} rows, "
                     f"tested with {weights}")
        if before and best:
            lines.append(f"  in short: zero-shot dev {before['value']:.4f} -> best dev "
                         f"{best['value']:.4f} after training -> test {test['value']:.4f}")
    if summary["files"]:
        folder = summary["folder"]
        shown = [str(Path(f).relative_to(folder)) if folder and Path(f).is_relative_to(folder)
                 else f for f in summary["files"]]
        lines.append(f"  files in {folder}: " + ", ".join(shown))
    if summary["tensorboard"]:
        lines.append(f"  curves: {summary['tensorboard']}")
    return "\n".join(lines)
