"""The one place that knows Hugging Face module names.

Methods speak of **roles**, the paper's letters for the hidden states of a decoder layer
(section 3.1, eqs. 1-2): ``q k v o`` for the attention projections and ``g u d`` for the FFN's
gate, up and down projections. This module maps each supported ``model_type`` to where each
role's hidden state is produced, including the fused layouts:

* ``llama`` family (``llama``, ``mistral``, ``qwen2``; SmolLM2 is a llama): plain ``nn.Linear``.
* ``gpt2``: ``transformers.pytorch_utils.Conv1D`` (weight stored ``(in, out)``), a fused
  ``c_attn`` laid out ``[Q | K | V]``; no gate.
* ``gpt_neox``: a fused ``query_key_value`` whose output is viewed as
  ``(heads, 3 * head_size)``, i.e. ``[q_h | k_h | v_h]`` interleaved per head; no gate.

A :class:`Site` is one role in one layer: the module that produces it and the output channels
of that module that belong to the role. Grouped-query attention is handled because widths are
read off the modules (``k``/``v`` are ``num_key_value_heads * head_dim`` wide).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from methods.input_errors import MethodConfigError

ROLES: tuple[str, ...] = ("q", "k", "v", "o", "g", "u", "d")
ROLE_NAMES = {
    "q": "Query", "k": "Key", "v": "Value", "o": "attention Output",
    "g": "FFN Gate", "u": "FFN Up", "d": "FFN Down",
}


@dataclass(frozen=True)
class RoleSpec:
    """Where a role lives inside one decoder layer.

    Attributes:
        module: path of the producing module relative to the decoder layer.
        layout: ``"full"`` (the whole output), ``"fused"`` (contiguous thirds ``[Q|K|V]``) or
            ``"per_head"`` (thirds interleaved per attention head, GPT-NeoX).
        part: which third of a fused output (0 = Q, 1 = K, 2 = V).
    """

    module: str
    layout: str = "full"
    part: int = 0


@dataclass(frozen=True)
class Architecture:
    """Module paths of one architecture family."""

    layers: str
    input_norm: str
    roles: dict[str, RoleSpec] = field(default_factory=dict)
    heads_attr: str = "num_attention_heads"


_LLAMA = Architecture(
    layers="model.layers",
    input_norm="input_layernorm",
    roles={
        "q": RoleSpec("self_attn.q_proj"), "k": RoleSpec("self_attn.k_proj"),
        "v": RoleSpec("self_attn.v_proj"), "o": RoleSpec("self_attn.o_proj"),
        "g": RoleSpec("mlp.gate_proj"), "u": RoleSpec("mlp.up_proj"),
        "d": RoleSpec("mlp.down_proj"),
    },
)
_GPT2 = Architecture(
    layers="transformer.h",
    input_norm="ln_1",
    roles={
        "q": RoleSpec("attn.c_attn", "fused", 0), "k": RoleSpec("attn.c_attn", "fused", 1),
        "v": RoleSpec("attn.c_attn", "fused", 2), "o": RoleSpec("attn.c_proj"),
        "u": RoleSpec("mlp.c_fc"), "d": RoleSpec("mlp.c_proj"),
    },
    heads_attr="n_head",
)
_GPT_NEOX = Architecture(
    layers="gpt_neox.layers",
    input_norm="input_layernorm",
    roles={
        "q": RoleSpec("attention.query_key_value", "per_head", 0),
        "k": RoleSpec("attention.query_key_value", "per_head", 1),
        "v": RoleSpec("attention.query_key_value", "per_head", 2),
        "o": RoleSpec("attention.dense"),
        "u": RoleSpec("mlp.dense_h_to_4h"), "d": RoleSpec("mlp.dense_4h_to_h"),
    },
)

ARCHITECTURES: dict[str, Architecture] = {
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "gpt2": _GPT2, "gpt_neox": _GPT_NEOX,
}


@dataclass
class Site:
    """One role of one decoder layer.

    Attributes:
        layer: decoder layer index.
        role: one of :data:`ROLES`.
        name: full module name in the model (e.g. ``model.layers.0.self_attn.q_proj``).
        module: the producing ``nn.Linear`` or ``Conv1D``.
        channels: output-channel indices of ``module`` that hold this role (``None`` = all).
    """

    layer: int
    role: str
    name: str
    module: nn.Module
    channels: torch.Tensor | None

    @property
    def in_features(self) -> int:
        return weight_out_in(self.module).shape[1]

    @property
    def out_features(self) -> int:
        return weight_out_in(self.module).shape[0]

    @property
    def width(self) -> int:
        """Width of this role's hidden state (e.g. ``num_key_value_heads * head_dim`` for v)."""
        return self.out_features if self.channels is None else int(self.channels.numel())


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """The module's weight as ``(out, in)`` (a view; Conv1D stores ``(in, out)``)."""
    if isinstance(module, Conv1D):
        return module.weight.t()
    if isinstance(module, nn.Linear):
        return module.weight
    raise TypeError(f"unsupported projection module {type(module).__name__}")


def get_architecture(model: nn.Module) -> Architecture:
    """Look up the model's architecture; a clear error lists the supported ``model_type``s."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"unsupported model_type {model_type!r}; supported: {sorted(ARCHITECTURES)}. "
            "Add an entry to methods.architectures.ARCHITECTURES to support it."
        )
    return ARCHITECTURES[model_type]


def available_roles(model: nn.Module) -> tuple[str, ...]:
    """Roles the model's architecture has, in canonical order."""
    arch = get_architecture(model)
    return tuple(r for r in ROLES if r in arch.roles)


def validate_roles(model: nn.Module, roles: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check role letters against the architecture; returns them in canonical order."""
    have = available_roles(model)
    for role in roles:
        if role not in ROLES:
            raise MethodConfigError(f"unknown role {role!r}; roles are {ROLES} ({ROLE_NAMES})")
        if role not in have:
            raise MethodConfigError(
                f"role {role!r} ({ROLE_NAMES[role]}) does not exist in "
                f"{model.config.model_type}; it has {have}"
            )
    if len(set(roles)) != len(roles):
        raise MethodConfigError(f"duplicate roles in {tuple(roles)}")
    return tuple(r for r in ROLES if r in roles)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder layers."""
    return model.get_submodule(get_architecture(model).layers)


def layer_input_norm(model: nn.Module, layer: int) -> nn.Module:
    """The normalisation applied to a layer's input before attention."""
    return decoder_layers(model)[layer].get_submodule(get_architecture(model).input_norm)


def _channels(spec: RoleSpec, module: nn.Module, model: nn.Module) -> torch.Tensor | None:
    if spec.layout == "full":
        return None
    out = weight_out_in(module).shape[0]
    device = weight_out_in(module).device if weight_out_in(module).device.type != "meta" else None
    if spec.layout == "fused":
        third = out // 3
        return torch.arange(spec.part * third, (spec.part + 1) * third, device=device)
    heads = getattr(model.config, get_architecture(model).heads_attr)
    head_size = out // (3 * heads)
    base = torch.arange(heads, device=device)[:, None] * 3 * head_size + spec.part * head_size
    return (base + torch.arange(head_size, device=device)[None, :]).reshape(-1)


def find_sites(model: nn.Module, roles: tuple[str, ...] | list[str]) -> list[Site]:
    """Every (layer, role) site for the given roles, in layer then role order."""
    arch = get_architecture(model)
    roles = validate_roles(model, roles)
    sites = []
    for index, layer in enumerate(decoder_layers(model)):
        for role in roles:
            spec = arch.roles[role]
            module = layer.get_submodule(spec.module)
            prefix = f"{arch.layers}.{index}.{spec.module}"
            sites.append(Site(index, role, prefix, module, _channels(spec, module, model)))
    return sites


def sites_by_module(sites: list[Site]) -> dict[str, list[Site]]:
    """Group sites by producing module (fused modules hold several roles)."""
    grouped: dict[str, list[Site]] = {}
    for site in sites:
        grouped.setdefault(site.name, []).append(site)
    return grouped
