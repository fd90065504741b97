"""PARADE: Prompt Aware Representation ADjustmEnt (paper section 3.3, eqs. 3-10).

At every decoder layer a vector generator reads the hidden states of the **prompt** tokens
entering the layer and produces per-example vectors (eq. 6)::

    l = GeLU(Pooler(h W_down)) W_up + b_up,     l_q, l_v, l_u = Split(l)

that rescale the Query, Value and FFN-Up hidden states (eqs. 4-5): ``Q' = l_q ⊙ Q``,
``V' = l_v ⊙ V``, ``U' = l_u ⊙ U``, broadcast over positions, on the projection outputs
(before rotary embeddings). ``W_up = 0`` and ``b_up = 1`` make the model equal the backbone at
initialisation (section 4.3).

Conditioning protocol (how the model learns what the prompt is):

* training / teacher forcing: call ``model(..., prompt_mask=mask)`` with the mask taken from
  the batch by :meth:`Parade.forward_inputs`, which also checks it (every row has a prompt
  token) on the host, before the forward; only tokens where ``mask`` is True are pooled
  (never padding or response tokens). In training mode a missing ``prompt_mask`` is an
  error, since pooling the response would leak the answer.
* generation (:func:`~parade_lightning.generate` enters :meth:`Parade.generating`): the
  prompts' attention mask is checked once on the host; the first forward is the prefill and
  pools the attended prompt tokens, every later forward is a decode step that reuses the
  prefill's vectors: no host sync, no data-dependent branch, one graph with a static cache
  (``torch.compile``, CUDA graphs). Modes with several prompt forwards (chunked prefill,
  assisted decoding) are not supported: only the first would be pooled.
* a bare call outside :meth:`Parade.generating` without ``prompt_mask`` looks at its inputs
  (a host sync): no cached tokens is a prefill over the attended tokens, else a decode step.

Prefill cost per layer: one down-projection, a few batched matmuls (pooler), one ``addmm``
(every role's vector), one in-place multiply per hooked projection.

Readings where the paper is ambiguous (docs/paper_readings.md has the alternatives): eq. 10's
``c_kᵀ h'_j`` as ``c_kᵀ m_{j→k}``, pooler widths ``r`` (:class:`~methods.poolers.CapsulePooler`);
PARADE-2's "one iteration step" as one routing pass with uniform coupling
(:class:`~methods.poolers.RoutingPooler`); the generator reads the layer's input before its
normalisation (``input="hidden"``; ``"normed"`` is the other reading); vectors scale the
projection outputs, before rotary embeddings.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from methods.architectures import (
    Site,
    decoder_layers,
    find_sites,
    layer_input_norm,
    sites_by_module,
)
from methods.base import AdapterModule, PeftMethod, rescale, scatter_scale, uniform_with_std
from methods.input_errors import MethodConfigError
from methods.poolers import POOLERS, check_mask


@dataclass
class ParadeState:
    """What the current forward pass should do; shared by all layers of one model.

    ``compute``: make new vectors (else reuse the last ones); ``mask``: the ``(B, T)`` bool
    mask of the tokens to pool (``None``: all). ``session_mask`` is the prompts' mask while
    :meth:`Parade.generating` is active and ``session_prefilled`` says whether its prefill
    ran; both are plain host values, so a traced forward branches on them without a sync.
    """

    compute: bool = True
    mask: torch.Tensor | None = None
    session_mask: torch.Tensor | None = None
    session_prefilled: bool = False


class VectorGenerator(nn.Module):
    """``VG(h)`` of eq. 6: down-projection, pooler, GeLU, up-projection with bias."""

    def __init__(
        self, d_model: int, rank: int, d_out: int, pooler: str, num_capsules: int,
        init_std: float, device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, rank, bias=False, device=device)  # W_down
        self.pooler = POOLERS[pooler](rank, num_capsules, init_std).to(device)
        self.act = nn.GELU()
        self.up = nn.Linear(rank, d_out, device=device)  # W_up, b_up
        uniform_with_std(self.down.weight, init_std)
        nn.init.zeros_(self.up.weight)
        nn.init.ones_(self.up.bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # written with matmuls rather than the Linear modules' forward so that weights with a
        # leading per-row dimension (multi-tenant batches) work unchanged
        w_down, w_up = self.down.weight, self.up.weight  # (r, d), (d_out, r)  [or (B, …)]
        h = h.to(w_down.dtype) @ w_down.transpose(-1, -2)  # (B, T, r)  h' = h W_down
        pooled = self.act(self.pooler(h, mask))  # (B, r)
        if w_up.dim() == 2:  # one adapter: a single fused multiply-add
            return torch.addmm(self.up.bias, pooled, w_up.t())  # (B, d_out)  l
        return (w_up @ pooled.unsqueeze(-1)).squeeze(-1) + self.up.bias  # per-row weights


class ParadeLayer(AdapterModule):
    """One layer's generator and the hooks that apply its vectors to the projections."""

    def __init__(
        self, layer: nn.Module, index: int, sites: list[Site], method: Parade, state: ParadeState,
        d_model: int, norm: nn.Module | None,
    ) -> None:
        super().__init__(index)
        self.roles = [s.role for s in sites]
        self.widths = [s.width for s in sites]
        device = sites[0].module.weight.device
        self.generator = VectorGenerator(
            d_model, method.rank, sum(self.widths), method.pooler, method.num_capsules,
            method.init_std, device,
        )
        object.__setattr__(self, "_state", state)  # shared, not a submodule
        # per host module: its output width and the (start, stop, role) slices of l it takes
        self.hosts: list[tuple[int, list[tuple[int, int, str]]]] = []
        offsets = torch.tensor([0, *self.widths]).cumsum(0).tolist()
        for i, group in enumerate(sites_by_module(sites).values()):
            parts = []
            for s in group:
                k = self.roles.index(s.role)
                self.set_channels(s.role, s.channels)  # a role is in one host of a layer
                parts.append((offsets[k], offsets[k + 1], s.role))
            self.hosts.append((group[0].out_features, parts))
            self.hook_output(group[0].module, functools.partial(self._scale_output, i))
        self.scales: list[torch.Tensor] | None = None
        self.last_vectors: torch.Tensor | None = None
        # inference vectors at a fixed address: compiled decode steps read this buffer (a
        # static input of a CUDA graph) instead of tensors copied in as graph inputs each step
        self.register_buffer("prefill_vectors", torch.ones(0, sum(self.widths), device=device),
                             persistent=False)
        self._buffered = False
        if norm is None:
            self._handles.append(layer.register_forward_pre_hook(self._on_layer, with_kwargs=True))
        else:
            self.hook_output(norm, self._on_norm)

    # ------------------------------------------------------------- computing the vectors
    def _on_layer(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        self._generate(hidden)

    def _on_norm(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        self._generate(out)

    def _generate(self, hidden: torch.Tensor) -> None:
        state: ParadeState = self._state
        if not state.compute:
            return
        mask = state.mask  # a bool mask on the model's device, prepared once per forward
        if mask is None:
            mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        if mask.shape != hidden.shape[:2]:  # shapes are static: no host sync
            raise ValueError(
                f"PARADE: prompt_mask has shape {tuple(mask.shape)} but the layer input is "
                f"{tuple(hidden.shape[:2])}"
            )
        vectors = self.generator(hidden, mask)  # (B, d_out)
        self.last_vectors = vectors.detach()
        self._buffered = not torch.is_grad_enabled()
        if self._buffered:  # in place when the shape allows, so the address stays
            if self.prefill_vectors.shape == vectors.shape:
                self.prefill_vectors.copy_(vectors)
            else:
                self.prefill_vectors = vectors.clone()
            vectors = self.prefill_vectors
        self.scales = [self._host_scale(i, vectors) for i in range(len(self.hosts))]

    def _host_scale(self, i: int, vectors: torch.Tensor) -> torch.Tensor:
        """Scale over the whole host output: the role slices of ``l``, ones elsewhere."""
        out_features, parts = self.hosts[i]
        slices = [(self.channels(role), vectors[:, start:stop]) for start, stop, role in parts]
        return scatter_scale(out_features, slices)[:, None, :]  # (B, 1, out)

    # ------------------------------------------------------------- applying them (eqs. 4-5)
    def _scale_output(
        self, i: int, module: nn.Module, args: tuple, out: torch.Tensor
    ) -> torch.Tensor:
        if self.scales is None:
            raise RuntimeError("PARADE: a projection ran before its layer made the vectors")
        scale = self.scales[i]  # (B, 1, out)
        if self._buffered and torch.compiler.is_compiling():
            scale = self._host_scale(i, self.prefill_vectors)  # from the buffer, in the graph
        if scale.shape[0] != out.shape[0]:
            raise RuntimeError(
                f"PARADE: vectors were made for {scale.shape[0]} rows at prefill but this "
                f"step has {out.shape[0]}; run the prefill through this model"
            )
        return rescale(out, scale)

    def vectors_by_role(self) -> dict[str, torch.Tensor]:
        """The last generated vectors split per role: ``{role: (B, width)}``."""
        if self.last_vectors is None:
            return {}
        return dict(zip(self.roles, self.last_vectors.split(self.widths, dim=1), strict=True))

    def parameter_roles(self) -> list[tuple[str, str, int]]:
        rows = [("W_down", "shared", self.generator.down.weight.numel())]
        rows += [("pooler", "shared", p.numel()) for p in self.generator.pooler.parameters()]
        rank = self.generator.up.in_features
        rows += [("W_up", role, w * rank) for role, w in zip(self.roles, self.widths, strict=True)]
        rows += [("b_up", role, w) for role, w in zip(self.roles, self.widths, strict=True)]
        return rows


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` as bool; a bool mask is returned as is (no op in a traced graph)."""
    return mask if mask.dtype == torch.bool else mask.bool()


def _has_cached_tokens(kwargs: dict) -> bool:
    """True at decode steps: the KV cache holds tokens (``cache=`` in transformers ≥ 5.2x,
    ``past_key_values=`` before), or the attention mask is longer than the new tokens."""
    for name in ("cache", "past_key_values"):
        cache = kwargs.get(name)
        if cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0:
            return True
    ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
    if ids is not None and mask is not None and mask.dim() == 2:
        return mask.shape[1] > ids.shape[1]
    return False


class Parade(PeftMethod):
    """PARADE (section 3.3) with the paper's defaults (section 4.3).

    Args:
        rank: bottleneck dimension r of the vector generator (paper: 12).
        num_capsules: K output capsules of the capsule pooler (paper: 4); r must divide by K.
        targets: roles whose hidden states are rescaled (paper: ``q v u``).
        pooler: ``"capsule"`` (attentional capsule pooler, eqs. 7-10), ``"last"`` (last prompt
            token, PARADE-1) or ``"routing"`` (dynamic routing, PARADE-2).
        input: ``"hidden"`` (the hidden state entering the layer, as the paper) or
            ``"normed"`` (after the layer's input normalisation).
        init_std: std of the uniform init of ``W_down``, ``W_k^cap`` and ``v_k`` (paper: 0.02).
    """

    batch_keys = ("prompt_mask",)
    size_knob = "rank"

    def __init__(
        self,
        rank: int = 12,
        num_capsules: int = 4,
        targets: tuple[str, ...] = ("q", "v", "u"),
        pooler: str = "capsule",
        input: str = "hidden",
        init_std: float = 0.02,
    ) -> None:
        if pooler not in POOLERS:
            raise MethodConfigError(f"unknown pooler {pooler!r}; choose one of {sorted(POOLERS)}")
        if input not in ("hidden", "normed"):
            raise MethodConfigError(f"input must be 'hidden' or 'normed', got {input!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise MethodConfigError(
                f"{type(self).__name__}: rank must be an integer >= 1, got {rank!r} "
                "(rank 0 would leave only the generator's bias to train)")
        if pooler != "last" and (not isinstance(num_capsules, int) or num_capsules < 1):
            raise MethodConfigError(
                f"{type(self).__name__}: num_capsules must be an integer >= 1, got "
                f"{num_capsules!r}")
        if not tuple(targets):
            raise MethodConfigError(
                f"{type(self).__name__}: targets is empty; name at least one role "
                "(e.g. [q, v, u])")
        if pooler != "last" and rank % num_capsules:
            raise MethodConfigError(
                f"rank r={rank} must be divisible by the number of capsules K={num_capsules}"
            )
        self.rank, self.num_capsules, self.targets = rank, num_capsules, tuple(targets)
        self.pooler, self.input, self.init_std = pooler, input, init_std

    @classmethod
    def sized(cls, init_args: dict, value: int) -> dict:
        """``rank = value``; when the configured K does not divide it, K becomes the largest
        divisor of the rank below it (r = 3, 6: K = 3; r = 12, 24…: K = 4)."""
        out = {**init_args, "rank": value}
        capsules = int(out.get("num_capsules", 4))
        if out.get("pooler", "capsule") != "last" and value % capsules:
            out["num_capsules"] = max(d for d in range(1, min(value, capsules) + 1)
                                      if value % d == 0)
        return out

    def forward_inputs(self, batch) -> dict:
        """``{"prompt_mask": ...}`` from the batch, checked here on the host (every row must
        have a prompt token) so that the forward needs no host sync."""
        inputs = super().forward_inputs(batch)
        if inputs["prompt_mask"] is not None:
            inputs["prompt_mask"] = _as_bool(inputs["prompt_mask"])
            check_mask(inputs["prompt_mask"])
        return inputs

    @contextlib.contextmanager
    def generating(self, model: nn.Module, attention_mask: torch.Tensor) -> Iterator[None]:
        """One generation: check the prompts' mask once, then let the first forward be the
        prefill (pooling the attended prompt tokens) and every later one a decode step.

        ``attention_mask`` should already have one row per generated sequence (beams ×
        samples, as :func:`~parade_lightning.generate` passes it) and sit on the model's
        device; rows are repeated at the prefill if it has one row per prompt."""
        state: ParadeState = model.parade_state
        mask = _as_bool(attention_mask)
        check_mask(mask)
        state.session_mask, state.session_prefilled = mask, False
        try:
            yield
        finally:
            state.session_mask, state.session_prefilled = None, False

    def begin_forward(self, model: nn.Module, kwargs: dict, inputs: dict) -> None:
        """Tell the layers what this forward does (see the module docstring): pool the
        ``prompt_mask`` tokens, run a generation's prefill or reuse its vectors, or (outside a
        generation) decide from the inputs. Every branch but the last reads host values only."""
        state: ParadeState = model.parade_state
        prompt_mask = inputs.get("prompt_mask")
        ids = kwargs.get("input_ids")
        if prompt_mask is not None:  # checked by forward_inputs, on the host
            state.compute, state.mask = True, _as_bool(prompt_mask)
        elif state.session_mask is not None:
            state.compute, state.mask = not state.session_prefilled, None
            if state.compute:  # the prefill
                mask = state.session_mask
                rows = mask.shape[0] if ids is None else ids.shape[0]
                if rows != mask.shape[0] and rows % mask.shape[0] == 0:
                    # rows expanded by beams/samples the caller did not pass to generating()
                    mask = mask.repeat_interleave(rows // mask.shape[0], dim=0)
                state.mask, state.session_prefilled = mask, True
        elif _has_cached_tokens(kwargs):
            state.compute, state.mask = False, None  # decode step: reuse prefill vectors
        elif model.training:
            raise ValueError(
                "PARADE needs prompt_mask= in training forwards (pooling over response tokens "
                "would leak the answer under teacher forcing)"
            )
        else:
            mask = kwargs.get("attention_mask")
            state.compute = True
            state.mask = None if mask is None or mask.dim() != 2 else _as_bool(mask)
            if state.mask is not None and not torch.compiler.is_compiling():
                check_mask(state.mask)

    def install(self, model: nn.Module) -> None:
        state = ParadeState()
        model.parade_state = state  # shared by the layers of this model; read by begin_forward
        sites = find_sites(model, self.targets)
        d_model = model.get_input_embeddings().weight.shape[1]
        for index, layer in enumerate(decoder_layers(model)):
            norm = layer_input_norm(model, index) if self.input == "normed" else None
            layer_sites = [s for s in sites if s.layer == index]
            layer.add_module(
                "parade", ParadeLayer(layer, index, layer_sites, self, state, d_model, norm)
            )

    @staticmethod
    def layers(model: nn.Module) -> list[ParadeLayer]:
        return [m for m in model.modules() if isinstance(m, ParadeLayer)]


class Parade1(Parade):
    """PARADE-1 (section 4.5): pools by taking the last prompt token, unbounded (no squashing,
    eq. 8): it diverged at lr 3e-3 and 1e-2 (docs/results/quality/README.md, "Ablation")."""

    def __init__(self, rank: int = 12, num_capsules: int = 4,
                 targets: tuple[str, ...] = ("q", "v", "u"), pooler: str = "last",
                 input: str = "hidden", init_std: float = 0.02) -> None:
        super().__init__(rank, num_capsules, targets, pooler, input, init_std)


class Parade2(Parade):
    """PARADE-2 (section 4.5): dynamic-routing capsules with one iteration (read as one
    routing pass with uniform coupling; see :class:`~methods.poolers.RoutingPooler`)."""

    def __init__(self, rank: int = 12, num_capsules: int = 4,
                 targets: tuple[str, ...] = ("q", "v", "u"), pooler: str = "routing",
                 input: str = "hidden", init_std: float = 0.02) -> None:
        super().__init__(rank, num_capsules, targets, pooler, input, init_std)


class Parade3(Parade):
    """PARADE-3 (section 4.5): vectors for Query, Key, Value, Gate and Up with r = 8."""

    def __init__(self, rank: int = 8, num_capsules: int = 4,
                 targets: tuple[str, ...] = ("q", "k", "v", "g", "u"), pooler: str = "capsule",
                 input: str = "hidden", init_std: float = 0.02) -> None:
        super().__init__(rank, num_capsules, targets, pooler, input, init_std)


class Parade4(Parade):
    """PARADE-4 (section 4.5): vectors for Query and Value only with r = 24."""

    def __init__(self, rank: int = 24, num_capsules: int = 4,
                 targets: tuple[str, ...] = ("q", "v"), pooler: str = "capsule",
                 input: str = "hidden", init_std: float = 0.02) -> None:
        super().__init__(rank, num_capsules, targets, pooler, input, init_std)
