"""(IA)³ (Liu et al., 2022a): learned vectors that rescale hidden states element-wise.

Two configurations:

* standard (``dim=None``): one vector per targeted role, ones-initialised. The default
  placement is PEFT's: the outputs of ``k`` and ``v`` and the *input* of the FFN down
  projection (``feedforward=("d",)``, a vector of width ``d_ffn``).
* the paper's budgeted variant (appendix E, ``dim=16``, targets ``q k u``): each vector is
  generated from a ``dim``-sized seed through a learnable projection,
  ``l = 1 + z P`` with ``z ∈ R^dim`` and ``P ∈ R^{dim×width}`` zero-initialised, so the model
  is the backbone at initialisation and the count is ``dim + dim·width`` per role.

On a fused module the vector covers only the role's channels; the others are scaled by one.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.architectures import Site, find_sites, sites_by_module
from methods.base import AdapterModule, PeftMethod, rescale, scatter_scale
from methods.input_errors import MethodConfigError


class IA3Adapter(AdapterModule):
    """The (IA)³ vectors of one (possibly fused) projection module.

    Args:
        sites: the module's targeted roles (all from the same module).
        feedforward: scale the module's input instead of its output (one site only).
        dim: seed size of the budgeted variant, or ``None`` for plain vectors.
    """

    def __init__(self, sites: list[Site], feedforward: bool, dim: int | None) -> None:
        super().__init__(sites[0].layer)
        host = sites[0]
        device = host.module.weight.device
        self.feedforward, self.dim = feedforward, dim
        self.out_features = host.in_features if feedforward else host.out_features
        self.roles = [site.role for site in sites]
        self.l = nn.ParameterDict()
        self.z = nn.ParameterDict()
        self.P = nn.ParameterDict()
        for site in sites:
            width = site.in_features if feedforward else site.width
            self.set_channels(site.role, None if feedforward else site.channels)
            if dim is None:
                self.l[site.role] = nn.Parameter(torch.ones(width, device=device))
            else:
                seed = torch.randn(dim, device=device) / dim**0.5
                self.z[site.role] = nn.Parameter(seed)
                self.P[site.role] = nn.Parameter(torch.zeros(dim, width, device=device))
        self._cached: tuple[list, torch.Tensor, list[int]] | None = None
        # one plain vector over the whole output: nothing to compute, so nothing to cache
        self._direct = dim is None and len(self.roles) == 1 and self.channels(host.role) is None
        if feedforward:
            self.hook_input(host.module, self._scale_input)
        else:
            self.hook_output(host.module, self._scale_output)

    def vector(self, role: str) -> torch.Tensor:
        """The role's scaling vector, shape ``(width,)``."""
        if self.dim is None:
            return self.l[role]
        z = self.z[role].unsqueeze(-2)  # (..., 1, dim)
        return 1.0 + (z @ self.P[role]).squeeze(-2)  # (..., width)

    def scale(self) -> torch.Tensor:
        """The vector over all of the host's output (or input) channels, ones where untargeted.

        Without autograd the result is cached until a parameter changes (version counter) or
        is swapped (multi-tenant rows): decode steps then skip ``1 + z P`` and the scatter.
        Under ``torch.compile`` the vector is recomputed inside the graph instead (reading
        version counters would break the graph; the compiler fuses the few small ops).
        """
        if torch.is_grad_enabled() or self._direct or torch.compiler.is_compiling():
            return self._scale()
        tensors = self._vectors_parameters()
        versions = [t._version for t in tensors]
        cached = self._cached
        # identity, not id(): the cache holds the tensors, so a freed tensor's address can
        # never be mistaken for a new one (multi-tenant batches swap in fresh tensors)
        if cached is None or cached[2] != versions or any(
            a is not b for a, b in zip(cached[0], tensors, strict=True)
        ):
            self._cached = cached = (tensors, self._scale(), versions)
        return cached[1]

    def _vectors_parameters(self) -> list[torch.Tensor]:
        if self.dim is None:
            return [self.l[role] for role in self.roles]
        return [t for role in self.roles for t in (self.z[role], self.P[role])]

    def _scale(self) -> torch.Tensor:
        parts = [(self.channels(role), self.vector(role)) for role in self.roles]
        return scatter_scale(self.out_features, parts)  # (..., out)

    def _scale_output(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        # (out,) broadcasts over (B, T, out); per-row (B, out) vectors become (B, 1, out)
        return rescale(out, self.scale().unsqueeze(-2))

    def _scale_input(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]  # the caller's tensor (the FFN activation): never scaled in place
        return (x * self.scale().unsqueeze(-2).to(x.dtype), *args[1:])


class IA3(PeftMethod):
    """(IA)³ on chosen roles.

    Args:
        targets: role letters to rescale (default PEFT's ``k v d``).
        feedforward: the subset of ``targets`` whose projection *input* is rescaled
            (default ``("d",)``: the FFN activation entering the down projection).
        dim: ``None`` for plain vectors; an int for the paper's budgeted variant
            (appendix E uses ``dim=16`` with ``targets=("q", "k", "u")``, ``feedforward=()``).
    """

    size_knob = "dim"

    @classmethod
    def sized(cls, init_args: dict, value: int) -> dict:
        """``dim = value`` for the budgeted variant; plain (IA)³ has one vector per role."""
        if init_args.get("dim") is None:
            raise ValueError(f"{cls.__name__} without `dim` has a fixed size (one vector per "
                             "role); use methods.PaperIA3 or set dim to match a budget")
        return {**init_args, "dim": value}

    def __init__(
        self,
        targets: tuple[str, ...] = ("k", "v", "d"),
        feedforward: tuple[str, ...] = ("d",),
        dim: int | None = None,
    ) -> None:
        self.targets, self.feedforward, self.dim = tuple(targets), tuple(feedforward), dim
        if not self.targets:
            raise MethodConfigError(
                f"{type(self).__name__}: targets is empty; name at least one role "
                "(e.g. [k, v, d])")
        stray = set(self.feedforward) - set(self.targets)
        if stray:
            raise MethodConfigError(
                f"feedforward roles {sorted(stray)} are not in targets {targets}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise MethodConfigError(
                f"{type(self).__name__} dim must be an integer >= 1 or None, got "
                f"{dim!r}")

    def install(self, model: nn.Module) -> None:
        for sites in sites_by_module(find_sites(model, self.targets)).values():
            ff = [s.role in self.feedforward for s in sites]
            if any(ff) and len(sites) > 1:
                raise ValueError(
                    f"{sites[0].name} produces roles {[s.role for s in sites]}; input-side "
                    "(feedforward) scaling of a fused module would scale all of them"
                )
            sites[0].module.add_module("ia3", IA3Adapter(sites, ff[0], self.dim))


class PaperIA3(IA3):
    """The paper's budgeted (IA)³ (appendix E): ``dim=16`` seeds on Query, Key and Up."""

    def __init__(
        self,
        targets: tuple[str, ...] = ("q", "k", "u"),
        feedforward: tuple[str, ...] = (),
        dim: int | None = 16,
    ) -> None:
        super().__init__(targets=targets, feedforward=feedforward, dim=dim)
