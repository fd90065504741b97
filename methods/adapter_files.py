"""Adapter files: a method's weights and configuration, without the backbone.

Two sources are understood everywhere an adapter is loaded:

* an adapter folder written by :func:`save_adapter`: ``adapter.safetensors`` plus
  ``adapter_config.json`` (``{"method": {"class_path", "init_args"}, "backbone", ...}``);
* a Lightning checkpoint written by ``parade fit`` (``*.ckpt``): the state dict holds only
  the adapter (``model.``-prefixed) and the hyper-parameters name the method and backbone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "parade-lightning-adapter"


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
        config = json.loads(config_path.read_text())
        if config.get("format") != FORMAT:
            raise ValueError(f"{config_path}: not a {FORMAT} file (a PEFT folder? use peft)")
        return AdapterFile(config["method"], load_file(str(weights)), config.get("backbone"),
                           str(path))
    if path.is_file() and path.suffix == ".ckpt":
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        hparams = ckpt.get("hyper_parameters", {})
        if "method" not in hparams:
            raise ValueError(f"{path}: checkpoint has no method hyper-parameters (not from parade)")
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
        return AdapterFile(hparams["method"], state, hparams.get("backbone"), str(path))
    raise FileNotFoundError(f"adapter not found: {path} (expected a folder or a .ckpt file)")
