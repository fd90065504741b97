"""Adapter files: a method's weights and configuration, without the backbone.

Two sources are understood everywhere an adapter is loaded:

* an adapter folder written by :func:`save_adapter`: ``adapter.safetensors`` plus
  ``adapter_config.json`` (``{"method": {"class_path", "init_args"}, "backbone", ...}``);
* a Lightning checkpoint written by ``parade fit`` (``*.ckpt``): the state dict holds only
  the adapter (``model.``-prefixed) and the hyper-parameters name the method and backbone.

No file read here can run code: safetensors for folders, and :func:`load_checkpoint_file`
(``torch.load(weights_only=True)``, tensors and plain data only) for checkpoints, which is
also what the trainer's checkpoint IO (:mod:`parade_lightning.checkpoint_io`) reads with.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from methods.input_errors import CheckpointNotFoundError, InputError, NotACheckpointError

FORMAT = "parade-lightning-adapter"


class UnsafeCheckpointError(pickle.UnpicklingError, InputError):
    """A checkpoint holds Python objects beyond tensors and plain data (loading it could run
    code), so it is refused."""


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a ``.ckpt``/``.pt`` file with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file pickles objects that could run code when loaded.
        ValueError: ``not a checkpoint: <path> (truncated?)`` for an empty, cut or foreign
            file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise NotACheckpointError(f"not a checkpoint: {path} (truncated?): {error}") from None
        raise UnsafeCheckpointError(
            f"refused to load {path}: it holds Python objects besides tensors and plain data, "
            "and unpickling them could run arbitrary code. If (and only if) you trust where it "
            "came from, convert it once: load it with torch.load(path, weights_only=False) in "
            "your own session and re-save only its tensors and plain values (e.g. "
            "torch.save({'state_dict': ..., 'hyper_parameters': {...}}, new_path)), or write "
            "an adapter folder with methods.adapter_files.save_adapter."
            f" ({str(error).splitlines()[-1].strip()[:200]})"
        ) from None
    except (EOFError, RuntimeError, OSError) as error:
        reason = str(error).split(".")[0] or type(error).__name__
        raise NotACheckpointError(
            f"not a checkpoint: {path} (truncated?): {reason}. An interrupted copy or save "
            "leaves such files; use another checkpoint (e.g. best-*.ckpt) or rerun."
        ) from None
    if not isinstance(checkpoint, dict):
        raise NotACheckpointError(
            f"not a checkpoint: {path} (it holds a {type(checkpoint).__name__}, not a dict)")
    return checkpoint


@dataclass
class AdapterFile:
    """What an adapter source holds."""

    method: dict[str, Any]  # {"class_path": ..., "init_args": {...}}
    state: dict[str, torch.Tensor]  # keyed by parameter names in the backbone
    backbone: str | None
    source: str


def save_adapter(model: nn.Module, out_dir: str | Path, backbone: str | None = None) -> Path:
    """Write the attached method's weights and config to ``out_dir``."""
    method = getattr(model, "peft_method", None)
    if method is None:
        raise ValueError("no PEFT method is attached to this model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous().cpu() for k, v in method.adapter_state_dict(model).items()}
    save_file(state, str(out / "adapter.safetensors"))
    config = {
        "format": FORMAT, "version": 1, "backbone": backbone,
        "model_type": model.config.model_type,
        "method": method.to_config(),
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out


def load_adapter(source: str | Path) -> AdapterFile:
    """Read an adapter folder or a ``parade fit`` checkpoint (clear errors for anything else)."""
    path = Path(source)
    if path.is_dir():
        config_path, weights = path / "adapter_config.json", path / "adapter.safetensors"
        if not config_path.is_file() or not weights.is_file():
            raise FileNotFoundError(
                f"{path} is not an adapter folder: it needs adapter_config.json and "
                "adapter.safetensors (written by methods.adapter_files.save_adapter)"
            )
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{config_path}: not valid JSON ({error})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ValueError(f"{config_path}: not a {FORMAT} file (a PEFT folder? use peft)")
        if not isinstance(config.get("method"), dict):
            raise ValueError(f"{config_path}: no 'method' entry ({{class_path, init_args}})")
        try:
            state = load_file(str(weights))
        except Exception as error:  # noqa: BLE001  (safetensors raises its own error types)
            raise NotACheckpointError(f"not an adapter weights file: {weights} (truncated?): "
                             f"{error}") from None
        return AdapterFile(config["method"], state, config.get("backbone"), str(path))
    if path.is_file() and path.suffix == ".ckpt":
        ckpt = load_checkpoint_file(path)
        hparams = ckpt.get("hyper_parameters", {})
        if "method" not in hparams or "state_dict" not in ckpt:
            raise ValueError(f"{path}: checkpoint has no method hyper-parameters (not from parade)")
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
        return AdapterFile(hparams["method"], state, hparams.get("backbone"), str(path))
    raise FileNotFoundError(f"adapter not found: {path} (expected a folder or a .ckpt file)")
