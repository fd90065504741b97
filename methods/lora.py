"""LoRA (Hu et al., 2021), the paper's main baseline (appendix E: rank 4 on every module).

For a role with hidden state ``H = x W`` LoRA adds ``scaling · dropout(x) A^T B^T`` with
``A ∈ R^{r×in}`` (Kaiming-uniform, as PEFT) and ``B ∈ R^{width×r}`` (zero), ``scaling = alpha/r``.
On a fused module (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``) each targeted role gets its
own ``A``/``B`` and its update lands only in that role's output channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from methods.architectures import (
    Site,
    available_roles,
    find_sites,
    sites_by_module,
    weight_out_in,
)
from methods.base import AdapterModule, PeftMethod
from methods.input_errors import MethodConfigError


class LoraAdapter(AdapterModule):
    """The LoRA matrices of the roles produced by one (possibly fused) projection module."""

    def __init__(self, sites: list[Site], r: int, alpha: float, dropout: float) -> None:
        super().__init__(sites[0].layer)
        host_w = weight_out_in(sites[0].module)
        kw = {"device": host_w.device, "dtype": torch.float32}
        self.r, self.scaling = r, alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.A = nn.ParameterDict()
        self.B = nn.ParameterDict()
        self.roles = [site.role for site in sites]
        for site in sites:
            a = torch.empty(r, site.in_features, **kw)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # PEFT's default init of A
            self.A[site.role] = nn.Parameter(a)
            self.B[site.role] = nn.Parameter(torch.zeros(site.width, r, **kw))
            self.set_channels(site.role, site.channels)
        self.merged = False
        self.hook_output(sites[0].module, self._add_update)

    def delta(self, role: str, x: torch.Tensor) -> torch.Tensor:
        """``scaling · x A^T B^T`` for one role: ``(..., in) -> (..., width)``."""
        a, b = self.A[role], self.B[role]  # (r, in), (width, r)  [or per-row (B, …)]
        h = self.dropout(x.to(a.dtype)) @ a.transpose(-1, -2)  # (B, T, r)
        return (h @ b.transpose(-1, -2)) * self.scaling  # (B, T, width)

    def _add_update(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return out
        x = args[0]
        for role in self.roles:
            update = self.delta(role, x).to(out.dtype)
            channels = self.channels(role)
            out = out + update if channels is None else out.index_add(-1, channels, update)
        return out

    @torch.no_grad()
    def weight_delta(self, role: str) -> torch.Tensor:
        """``scaling · B A`` as an ``(width, in)`` matrix."""
        return (self.B[role] @ self.A[role]) * self.scaling

    @torch.no_grad()
    def _apply_to_weight(self, host: nn.Module, sign: float) -> None:
        weight = weight_out_in(host)  # (out, in) view of the host weight
        for role in self.roles:
            delta = sign * self.weight_delta(role).to(weight.dtype)
            channels = self.channels(role)
            if channels is None:
                weight += delta
            else:
                weight.index_add_(0, channels, delta)


class LoRA(PeftMethod):
    """Low-rank adaptation of the chosen roles.

    Args:
        r: rank of every update (paper, appendix E: 4).
        alpha: scaling numerator; the update is multiplied by ``alpha / r``.
        dropout: dropout on the LoRA input during training.
        targets: role letters (``q k v o g u d``); ``None`` means every role the
            architecture has (all seven on LLaMA, as in the paper).
    """

    size_knob = "r"

    @classmethod
    def sized(cls, init_args: dict, value: int) -> dict:
        """``r = value`` with ``alpha`` scaled along, so the update's scale ``alpha / r`` stays."""
        ratio = float(init_args.get("alpha", 8.0)) / float(init_args.get("r", 4))
        return {**init_args, "r": value, "alpha": ratio * value}

    def __init__(
        self,
        r: int = 4,
        alpha: float = 8.0,
        dropout: float = 0.0,
        targets: tuple[str, ...] | None = None,
    ) -> None:
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise MethodConfigError(f"LoRA rank r must be >= 1 (an integer), got {r!r}")
        if targets is not None and not tuple(targets):
            raise MethodConfigError(
                "LoRA targets is empty; name at least one role, or leave it unset "
                "(null) for every projection")
        if not 0.0 <= dropout < 1.0:
            raise MethodConfigError(f"LoRA dropout must be in [0, 1), got {dropout}")
        self.r, self.alpha, self.dropout = r, alpha, dropout
        self.targets = tuple(targets) if targets is not None else None

    def roles(self, model: nn.Module) -> tuple[str, ...]:
        return self.targets if self.targets is not None else available_roles(model)

    def install(self, model: nn.Module) -> None:
        for sites in sites_by_module(find_sites(model, self.roles(model))).values():
            sites[0].module.add_module("lora", LoraAdapter(sites, self.r, self.alpha, self.dropout))

    def _host_pairs(self, model: nn.Module) -> list[tuple[nn.Module, LoraAdapter]]:
        return [
            (model.get_submodule(name.rsplit(".", 1)[0]), adapter)
            for name, adapter in self.adapters(model)
        ]

    def merge(self, model: nn.Module) -> None:
        """Fold every update into the frozen weights (zero-latency inference)."""
        for host, adapter in self._host_pairs(model):
            if not adapter.merged:
                adapter._apply_to_weight(host, +1.0)
                adapter.merged = True

    def unmerge(self, model: nn.Module) -> None:
        """Undo :meth:`merge` (exact up to floating-point rounding)."""
        for host, adapter in self._host_pairs(model):
            if adapter.merged:
                adapter._apply_to_weight(host, -1.0)
                adapter.merged = False
