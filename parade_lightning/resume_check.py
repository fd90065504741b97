"""A resumed run is the run that was checkpointed, or it does not start.

Resuming restores the optimizer (its learning rate and weight decay), the scheduler and the
adapter weights from the checkpoint, so a command that resumes with another method, rank,
learning rate, schedule, backbone, task or sequence length would silently train something
else than it says (and record the wrong settings in the run's ``config.yaml``).
:func:`check_resume` compares what the command asks for with the hyper-parameters the
checkpoint recorded and raises one :class:`ResumeMismatchError` listing every difference,
before the model is built or anything is written to the run folder.

Settings that do not change what is trained may differ (:data:`MAY_CHANGE`): evaluation
(beam size, generation length), memory/speed trade-offs (gradient checkpointing, batch size,
which :mod:`datamodules.resume` converts to examples, workers), and where data and caches are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from methods.adapter_files import load_checkpoint_file
from methods.input_errors import InputError
from methods.parade import Parade
from methods.registry import canonical_path, method_class, method_from_config

MAY_CHANGE: dict[str, frozenset[str]] = {
    "model": frozenset({"gradient_checkpointing", "num_beams", "max_new_tokens",
                        "generate_on_test", "_instantiator"}),
    "data": frozenset({"data_dir", "batch_size", "eval_batch_size", "num_workers",
                       "max_test_examples", "cache_dir", "use_cache", "max_new_tokens",
                       "_instantiator"}),
}
"""Hyper-parameters a resumed run may change, per section (all others are fixed)."""


WEIGHTS = frozenset({"method", "backbone"})
"""What a checkpoint's weights need to be loaded at all (also checked outside ``fit``)."""


class NothingToResumeError(FileNotFoundError, InputError):
    """``--ckpt_path last`` found no ``last.ckpt`` and a fresh start was not asked for."""


class ResumeMismatchError(ValueError, InputError):
    """The command contradicts hyper-parameters the checkpoint fixes."""


def _plain(value: Any) -> Any:
    if hasattr(value, "as_dict"):  # a jsonargparse Namespace
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _method(config: Any) -> dict[str, Any]:
    """A method config with defaults filled in and the class path in canonical form."""
    config = _plain(config)
    if isinstance(config, dict) and config.get("class_path"):
        config = method_from_config(config).to_config()
        config["class_path"] = canonical_path(method_class(config["class_path"]))
    return config


def _flat(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def planned_hyperparameters(config: Any) -> dict[str, dict[str, Any]]:
    """What the command would record: ``{"model": {...}, "data": {...}}``."""
    model = _plain(config.get("model")) or {}
    if "method" in model:  # None: PeftLitModule's default, Parade() with the paper's settings
        model["method"] = _method(model["method"] or Parade().to_config())
    data = _plain(config.get("data")) or {}
    if "class_path" in data:  # subclass mode: recorded as _class_path plus the init args
        data = {"_class_path": data["class_path"], **(data.get("init_args") or {})}
    return {"model": model, "data": data}


def saved_hyperparameters(checkpoint: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What the checkpoint recorded, in the same form."""
    model = dict(checkpoint.get("hyper_parameters") or {})
    if model.get("method") is not None:
        model["method"] = _method(model["method"])
    return {"model": model, "data": dict(checkpoint.get("datamodule_hyper_parameters") or {})}


def differences(saved: Mapping[str, Mapping[str, Any]],
                planned: Mapping[str, Mapping[str, Any]], training: bool = True) -> list[str]:
    """``"section.key: checkpoint X, this command Y"`` for each fixed setting that differs.

    ``training=False`` (``validate``/``test``/``predict`` with a checkpoint) compares only
    what decides the weights: ``model.method`` and ``model.backbone``.
    """
    lines = []
    if not training:
        saved = {"model": {k: v for k, v in saved.get("model", {}).items() if k in WEIGHTS}}
    for section in ("model", "data"):
        if not saved.get(section) or not planned.get(section):
            continue  # e.g. a checkpoint written without a datamodule
        old, new = saved[section], planned[section]
        if "method" in old and "method" in new and (
                old["method"].get("class_path") != new["method"].get("class_path")):
            # another method: its arguments differ wholesale, the class says it all
            old = {**old, "method": {"class_path": old["method"].get("class_path")}}
            new = {**new, "method": {"class_path": new["method"].get("class_path")}}
        old_flat, new_flat = _flat(old, ""), _flat(new, "")
        for key in sorted(set(old_flat) | set(new_flat)):
            if key.split(".")[0] in MAY_CHANGE[section] or key not in old_flat:
                continue  # changeable, or a setting this checkpoint predates
            if old_flat[key] != new_flat.get(key):
                lines.append(f"{section}.{key}: checkpoint {old_flat[key]!r}, "
                             f"this command {new_flat.get(key)!r}")
    return lines


def check_resume(config: Any, ckpt_path: str | Path, training: bool = True) -> None:
    """Raise :class:`ResumeMismatchError` when ``config`` contradicts ``ckpt_path``
    (``training``: ``fit`` resumes; otherwise only the weights' method and backbone).

    Also surfaces an unreadable checkpoint (missing, truncated, unsafe) before anything runs.
    """
    checkpoint = load_checkpoint_file(ckpt_path)
    found = differences(saved_hyperparameters(checkpoint), planned_hyperparameters(config),
                        training)
    if found:
        listed = "\n  ".join(found)
        raise ResumeMismatchError(
            f"cannot {'resume from' if training else 'load'} {ckpt_path}: this command changes "
            "settings the checkpoint fixes (its weights, optimizer and schedule were made "
            "with them):\n"
            f"  {listed}\n"
            "Use the checkpoint's settings (its run folder's config.yaml has them: "
            f"--config {Path(ckpt_path).parent.parent / 'config.yaml'}), "
            + ("or start a new run without --ckpt_path." if training
               else "or pass a checkpoint made with this command's method and backbone.")
        )
