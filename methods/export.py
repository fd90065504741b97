"""Export LoRA, (IA)³ and FromPeft adapters as Hugging Face PEFT adapter folders.

The folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` and loads with
``peft.PeftModel.from_pretrained(base, out_dir)``. PEFT puts one adapter on each module, so
per-role adapters that share a fused module (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``)
are combined:

* LoRA: ``A`` stacks the roles' ``A`` matrices (rank ``n·r``) and ``B`` is block-structured,
  each role's ``B`` in its own output channels and rank columns. ``rank_pattern`` and
  ``alpha_pattern`` (``n·r`` and ``n·alpha``) keep the scaling ``alpha / r``.
* (IA)³: one vector over the module's output with ones on the untargeted channels; the
  budgeted variant exports its materialised vectors ``1 + z P``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from methods.architectures import weight_out_in
from methods.from_peft import FromPeft
from methods.ia3 import IA3, IA3Adapter
from methods.lora import LoRA, LoraAdapter

_PREFIX = "base_model.model."


def _host(adapter_name: str) -> str:
    return adapter_name.rsplit(".", 1)[0]


def _lora_tensors(model: nn.Module, method: LoRA) -> tuple[dict, dict, dict]:
    tensors, ranks, alphas = {}, {}, {}
    for name, adapter in method.adapters(model):
        assert isinstance(adapter, LoraAdapter)
        host = _host(name)
        out_features = weight_out_in(model.get_submodule(host)).shape[0]
        r, n = adapter.r, len(adapter.roles)
        a = torch.cat([adapter.A[role] for role in adapter.roles], dim=0)  # (n·r, in)
        b = torch.zeros(out_features, n * r)  # (out, n·r)
        for i, role in enumerate(adapter.roles):
            rows = adapter.channels(role)
            rows = torch.arange(out_features) if rows is None else rows.cpu()
            b[rows, i * r : (i + 1) * r] = adapter.B[role].detach().float().cpu()
        tensors[f"{_PREFIX}{host}.lora_A.weight"] = a.detach().float().cpu().contiguous()
        tensors[f"{_PREFIX}{host}.lora_B.weight"] = b.contiguous()
        if n > 1:
            ranks[re.escape(host)] = n * r
            alphas[re.escape(host)] = n * method.alpha
    return tensors, ranks, alphas


def _ia3_tensors(model: nn.Module, method: IA3) -> tuple[dict, list, list]:
    tensors, targets, feedforward = {}, [], []
    for name, adapter in method.adapters(model):
        assert isinstance(adapter, IA3Adapter)
        host = _host(name)
        vector = adapter.scale().detach().float().cpu()
        shape = (1, -1) if adapter.feedforward else (-1, 1)
        tensors[f"{_PREFIX}{host}.ia3_l"] = vector.reshape(shape).contiguous()
        targets.append(host)
        if adapter.feedforward:
            feedforward.append(host)
    return tensors, targets, feedforward


def export_peft(
    model: nn.Module, out_dir: str | Path, base_model_name_or_path: str | None = None
) -> Path:
    """Write the model's LoRA or (IA)³ adapter as a PEFT adapter folder.

    Args:
        model: a backbone with :class:`methods.LoRA`, :class:`methods.IA3` or
            :class:`methods.FromPeft` (written by PEFT itself) attached.
        out_dir: folder to create (existing files inside are overwritten).
        base_model_name_or_path: recorded in ``adapter_config.json`` for PEFT.

    Returns:
        The folder's path.
    """
    method = getattr(model, "peft_method", None)
    fan_in_fan_out = model.config.model_type == "gpt2"  # Conv1D stores weights (in, out)
    common = {
        "base_model_name_or_path": base_model_name_or_path,
        "task_type": "CAUSAL_LM",
        "inference_mode": True,
        "fan_in_fan_out": fan_in_fan_out,
    }
    if isinstance(method, LoRA):
        tensors, ranks, alphas = _lora_tensors(model, method)
        hosts = sorted({_host(n) for n, _ in method.adapters(model)})
        config = {
            **common, "peft_type": "LORA", "r": method.r, "lora_alpha": method.alpha,
            "lora_dropout": method.dropout, "bias": "none", "target_modules": hosts,
            "rank_pattern": ranks, "alpha_pattern": alphas, "use_rslora": False,
        }
    elif isinstance(method, IA3):
        tensors, targets, feedforward = _ia3_tensors(model, method)
        config = {
            **common, "peft_type": "IA3", "target_modules": targets,
            "feedforward_modules": feedforward, "init_ia3_weights": True,
        }
    elif isinstance(method, FromPeft):  # already PEFT's: its own writer
        out = Path(out_dir)
        method.peft_model.peft_config["default"].base_model_name_or_path = \
            base_model_name_or_path
        method.peft_model.save_pretrained(str(out))
        return out
    else:
        name = type(method).__name__ if method is not None else "no method"
        raise TypeError(
            f"export_peft supports LoRA and IA3 adapters (and FromPeft's); the model carries "
            f"{name} (PEFT has no equivalent of PARADE's prompt-conditioned generators)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out
