"""Adapter files: a method's weights and configuration, without the backbone.

Sources understood everywhere an adapter is loaded (:func:`load_adapter`):

* an adapter folder written by :func:`save_pretrained` (format version 2)::

      adapter_config.json        method {class_path, init_args}, backbone name, the backbone's
                                 architecture fields and their hash, library versions, budget
      adapter_model.safetensors  the method's parameters, keyed by their names in the backbone
      README.md                  a short model card (task, data, metrics, budget when known)

* a version-1 folder (``adapter.safetensors`` + ``adapter_config.json``, the earlier
  ``save_adapter``), still loadable;
* a Lightning checkpoint written by ``parade fit`` (``*.ckpt``): the state dict holds only the
  adapter (``model.``-prefixed) and the hyper-parameters name the method and backbone.

:func:`check_backbone` compares the recorded architecture with a model's and names every field
that differs. Attaching and loading onto a backbone is :func:`methods.pretrained.load_pretrained`.

No file read here can run code: safetensors for folders, and :func:`load_checkpoint_file`
(``torch.load(weights_only=True)``, tensors and plain data only) for checkpoints, which is
also what the trainer's checkpoint IO (:mod:`parade_lightning.checkpoint_io`) reads with.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from methods.counting import parameter_budget
from methods.input_errors import CheckpointNotFoundError, InputError, NotACheckpointError
from methods.model_card import render_card

FORMAT = "parade-lightning-adapter"
VERSION = 2
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "adapter_config.json", "adapter_model.safetensors", \
    "README.md"
LEGACY_WEIGHTS_FILE = "adapter.safetensors"  # version 1
#: Config fields that do not change what the adapter was trained on (dtype, caching, output
#: switches, special token ids, bookkeeping); every other field is part of the fingerprint.
NOT_ARCHITECTURE = frozenset({
    "dtype", "torch_dtype", "transformers_version", "use_cache", "architectures",
    "output_attentions", "output_hidden_states", "return_dict", "bos_token_id", "eos_token_id",
    "pad_token_id", "name_or_path", "attn_implementation", "tokenizer_class",
})


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
    backbone_config: dict[str, Any] | None = None  # architecture fields (None: not recorded)
    info: dict[str, Any] = field(default_factory=dict)  # the rest of adapter_config.json


def backbone_fingerprint(model: nn.Module) -> tuple[dict[str, Any], str]:
    """The backbone's architecture fields (its Hugging Face config less
    :data:`NOT_ARCHITECTURE` and private keys, as JSON data) and their SHA-256."""
    raw = model.config.to_dict()
    fields = {k: v for k, v in sorted(raw.items())
              if k not in NOT_ARCHITECTURE and not k.startswith("_")}
    fields = json.loads(json.dumps(fields, sort_keys=True, default=str))
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return fields, digest


def backbone_differences(adapter: AdapterFile, model: nn.Module) -> list[str]:
    """``field: adapter X, model Y`` for every architecture field that differs."""
    if adapter.backbone_config is None:
        return []
    fields, _ = backbone_fingerprint(model)
    absent = "<absent>"
    keys = [k for k in sorted(set(fields) | set(adapter.backbone_config))
            if adapter.backbone_config.get(k, absent) != fields.get(k, absent)]
    keys.sort(key=lambda k: (k != "model_type", k not in fields or k not in
                             adapter.backbone_config))  # model type, then changed values
    return [f"{key}: adapter {adapter.backbone_config.get(key, absent)!r}, "
            f"model {fields.get(key, absent)!r}" for key in keys]


def check_backbone(adapter: AdapterFile, model: nn.Module, backbone: str | None = None) -> None:
    """Raise one clear error when ``model`` is not the backbone the adapter was trained on.

    Args:
        adapter: the loaded adapter.
        model: the backbone it is about to be attached to.
        backbone: the model's name, compared with the recorded one when both are known and the
            adapter recorded no architecture (version-1 folders, older checkpoints).
    """
    differences = backbone_differences(adapter, model)
    if differences:
        raise ValueError(
            f"adapter {adapter.source} was trained on backbone {adapter.backbone!r}, whose "
            f"config differs from this model's in {len(differences)} fields: "
            + "; ".join(differences[:8]) + ". Load the adapter onto that backbone.")
    if adapter.backbone_config is None and backbone and adapter.backbone and \
            adapter.backbone != backbone:
        raise ValueError(f"adapter {adapter.source} was trained on backbone "
                         f"{adapter.backbone!r}, this model is {backbone!r}")


def library_versions() -> dict[str, str]:
    versions = {}
    for package in ("parade-lightning", "torch", "transformers", "peft"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def save_pretrained(model: nn.Module, out_dir: str | Path, backbone: str | None = None,
                    card: dict[str, Any] | None = None) -> Path:
    """Write the attached method's adapter folder (format version 2, see the module doc).

    Args:
        model: a backbone with a method attached.
        out_dir: folder to create; existing files of the same names are overwritten.
        backbone: the backbone's name or path (``smollm2-135m``, a hub id), recorded so that
            :func:`methods.pretrained.load_pretrained` can load it.
        card: what the model card reports besides the method and budget: ``task``, ``data``
            (a mapping), ``metrics`` (name -> value), ``training`` (a mapping).

    Returns:
        The folder's path.
    """
    method = getattr(model, "peft_method", None)
    if method is None:
        raise ValueError("no PEFT method is attached to this model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in method.adapter_state_dict(model).items()}
    save_file(state, str(out / WEIGHTS_FILE))
    fields, digest = backbone_fingerprint(model)
    budget = parameter_budget(model)
    config = {
        "format": FORMAT, "version": VERSION, "backbone": backbone,
        "model_type": model.config.model_type, "backbone_config_hash": digest,
        "backbone_config": fields, "method": method.to_config(),
        "library": library_versions(),
        "budget": {"trainable": budget.trainable, "total": budget.total,
                   "percent": budget.percent},
        "card": card or {},
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (out / CARD_FILE).write_text(render_card(config))
    return out


save_adapter = save_pretrained  # the version-1 name, kept for callers


def _read_folder(path: Path) -> AdapterFile:
    config_path = path / CONFIG_FILE
    weights = next((path / n for n in (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE)
                    if (path / n).is_file()), None)
    if not config_path.is_file() or weights is None:
        raise FileNotFoundError(
            f"{path} is not an adapter folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(written by methods.adapter_files.save_pretrained or `parade export`)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path}: not valid JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{config_path}: not a {FORMAT} file (a PEFT folder? load it with "
                         "peft.PeftModel.from_pretrained)")
    if not isinstance(config.get("method"), dict):
        raise ValueError(f"{config_path}: no 'method' entry ({{class_path, init_args}})")
    if int(config.get("version", 1)) > VERSION:
        raise ValueError(f"{config_path}: format version {config['version']} is newer than "
                         f"this library reads ({VERSION}); upgrade parade-lightning")
    try:
        state = load_file(str(weights))
    except Exception as error:  # noqa: BLE001  (safetensors raises its own error types)
        raise NotACheckpointError(f"not an adapter weights file: {weights} (truncated?): "
                                  f"{error}") from None
    info = {k: v for k, v in config.items() if k not in ("method", "backbone", "backbone_config")}
    return AdapterFile(config["method"], state, config.get("backbone"),
                       str(path), config.get("backbone_config"), info)


def load_adapter(source: str | Path) -> AdapterFile:
    """Read an adapter folder (version 1 or 2) or a ``parade fit`` checkpoint (clear errors for
    anything else). Checkpoints load with ``weights_only=True``."""
    path = Path(source)
    if path.is_dir():
        return _read_folder(path)
    if path.is_file() and path.suffix == ".ckpt":
        ckpt = load_checkpoint_file(path)
        hparams = ckpt.get("hyper_parameters", {})
        if "method" not in hparams or "state_dict" not in ckpt:
            raise ValueError(f"{path}: checkpoint has no method hyper-parameters (not from parade)")
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
        return AdapterFile(hparams["method"], state, hparams.get("backbone"), str(path),
                           ckpt.get("backbone_config"),
                           {"global_step": ckpt.get("global_step"), "epoch": ckpt.get("epoch")})
    raise FileNotFoundError(f"adapter not found: {path} (expected a folder or a .ckpt file)")
