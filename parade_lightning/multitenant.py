"""Many tenants' adapters on one frozen backbone, mixed freely within a batch.

The paper's serving setting (section 3.2, table 4): one LLM, many tenants' PEFT modules, and a
batch whose rows belong to different tenants. :class:`MultiTenantModel` attaches one method
(the tenants' common configuration) and keeps every tenant's weights stacked in a bank. For a
batch it gathers each row's weights (``bank[name][tenant_of_row]``) and runs the ordinary
method code with those per-row tensors in place of the parameters; the methods' math
broadcasts over that leading row dimension:

* PARADE: the per-row generators run once at prefill; decode steps only multiply by the
  per-row vectors, so decoding costs the same whatever the number of distinct tenants.
* (IA)³: per-row vectors at every step (same cost as one tenant).
* LoRA: a per-row gathered low-rank product at every step (the plain-torch counterpart of
  Punica's BGMV), which is what PARADE is compared against.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from methods.adapter_files import AdapterFile, check_backbone, load_adapter
from methods.backbones import load_backbone, meta_model
from methods.base import PeftMethod
from methods.registry import method_from_config
from parade_lightning.generation import generate


@contextlib.contextmanager
def swapped_parameters(model: nn.Module, tensors: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily serve ``tensors`` (any shape) in place of the named parameters."""
    saved = []
    try:
        for name, tensor in tensors.items():
            owner, _, attr = name.rpartition(".")
            module = model.get_submodule(owner)
            saved.append((module, attr, module._parameters[attr]))
            module._parameters[attr] = tensor  # read back by nn.Module.__getattr__
        yield
    finally:
        for module, attr, param in reversed(saved):
            module._parameters[attr] = param


class MultiTenantModel:
    """One backbone serving many tenants' adapters of one method configuration.

    Args:
        model: the bare backbone (no method attached yet).
        tokenizer: its tokenizer.
        backbone: the backbone's name, checked against each adapter's recorded backbone.
        compile: decode from a static KV cache through a compiled forward (CUDA graphs on a
            GPU); the ``compile=`` of :func:`~parade_lightning.generate`, with its limits.
            The tenants' gathered weights are graph inputs, so a new tenant mix with the same
            batch shape reuses the compiled graph.
    """

    def __init__(self, model: nn.Module, tokenizer, backbone: str | None = None,
                 compile: bool | str | dict = False) -> None:
        if getattr(model, "peft_method", None) is not None:
            raise ValueError("pass the bare backbone; MultiTenantModel attaches the method")
        self.model, self.tokenizer, self.backbone = model.eval(), tokenizer, backbone
        self.compile = compile
        self.method: PeftMethod | None = None
        self._states: dict[str, dict[str, torch.Tensor]] = {}
        self._bank: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_backbone(cls, backbone: str, dtype: str = "float32",
                      compile: bool | str | dict = False) -> MultiTenantModel:
        model, tokenizer = load_backbone(backbone, dtype=dtype)
        return cls(model, tokenizer, backbone, compile=compile)

    @property
    def tenants(self) -> list[str]:
        return list(self._states)

    def add_tenant(self, name: str, source: str | Path | AdapterFile,
                   replace: bool = False) -> None:
        """Register a tenant's adapter (a :func:`methods.save_pretrained` folder of either
        format version, a ``.ckpt`` or an :class:`AdapterFile`).

        Raises a clear error, leaving the server exactly as it was (other tenants, and for a
        first tenant the bare backbone), when the name is taken (unless ``replace``), or the
        adapter was trained on another backbone, uses another method configuration, has
        mis-shaped weights or weights that are not finite (NaN/inf).
        """
        if name in self._states and not replace:
            raise ValueError(f"tenant {name!r} is already registered; pass replace=True to "
                             "swap its adapter")
        adapter = source if isinstance(source, AdapterFile) else load_adapter(source)
        if self.backbone and adapter.backbone and adapter.backbone != self.backbone:
            raise ValueError(
                f"tenant {name!r}: adapter {adapter.source} was trained on backbone "
                f"{adapter.backbone!r}, this model serves {self.backbone!r}"
            )
        try:
            check_backbone(adapter, self.model)  # the recorded architecture, field by field
        except ValueError as err:
            raise ValueError(f"tenant {name!r}: {err}") from None
        bad = sorted(k for k, v in adapter.state.items()
                     if v.is_floating_point() and not bool(torch.isfinite(v).all()))
        if bad:
            raise ValueError(f"tenant {name!r}: adapter {adapter.source} has non-finite (NaN or "
                             f"inf) weights in {len(bad)} tensors (first: {bad[:3]}); refused")
        method = method_from_config(adapter.method)  # defaults filled in, short names resolved
        if not method.per_row_weights:
            raise ValueError(
                f"tenant {name!r}: {type(method).__name__} cannot serve mixed batches (its "
                "layers take one weight per module, not one per row); serve it alone with "
                "methods.pretrained.load_pretrained")
        if self.method is None:
            # check against a weightless copy (meta device) first, so that a rejected first
            # tenant leaves the backbone bare
            skeleton = meta_model(self.model.config)
            probe = method_from_config(adapter.method)
            probe.attach(skeleton)
            probe.check_adapter_state(dict(probe.named_adapter_parameters(skeleton)),
                                      adapter.state)
            method.attach(self.model)
            self.method = method
        elif method.to_config() != self.method.to_config():
            raise ValueError(
                f"tenant {name!r} uses {method.to_config()}, but this model serves "
                f"{self.method.to_config()}; mixing method kinds or configurations in one model "
                "is not supported"
            )
        own = dict(self.method.named_adapter_parameters(self.model))
        self.method.check_adapter_state(own, adapter.state)  # raises before anything changes
        self._states[name] = {k: adapter.state[k].to(own[k]) for k in own}
        self._bank = None

    def _stacked(self) -> dict[str, torch.Tensor]:
        if self._bank is None:
            names = list(self._states)
            self._bank = {
                key: torch.stack([self._states[t][key] for t in names])  # (N, *shape)
                for key in next(iter(self._states.values()))
            }
        return self._bank

    def _check_tenants(self, tenants: Sequence[str]) -> None:
        unknown = sorted({t for t in tenants if t not in self._states})
        if unknown:
            raise KeyError(f"unknown tenants {unknown}; registered: {self.tenants}")

    def rows_for(self, tenants: Sequence[str], expand: int = 1) -> dict[str, torch.Tensor]:
        """Per-row weights for a batch: ``{param: (len(tenants) * expand, *shape)}``."""
        self._check_tenants(tenants)
        position = {name: i for i, name in enumerate(self._states)}  # the bank's row order
        index = torch.tensor([position[t] for t in tenants]).repeat_interleave(expand)
        return {
            k: bank.index_select(0, index.to(bank.device)) for k, bank in self._stacked().items()
        }

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str] | Sequence[Sequence[int]], tenants: Sequence[str],
        batch_size: int = 8, **generate_kwargs,
    ) -> list[str]:
        """Generate for every prompt with its own tenant's adapter, batches mixing tenants."""
        if len(prompts) != len(tenants):
            raise ValueError(f"{len(prompts)} prompts but {len(tenants)} tenants")
        if self.method is None:
            raise ValueError("no tenant registered; call add_tenant first")
        self._check_tenants(tenants)  # every tenant, before generating anything
        expand = max(generate_kwargs.get("num_beams", 1),
                     generate_kwargs.get("num_return_sequences", 1))
        texts: list[str] = []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            with swapped_parameters(self.model, self.rows_for(tenants[chunk], expand)):
                generate_kwargs.setdefault("compile", self.compile)
                texts += generate(self.model, self.tokenizer, prompts[chunk],
                                  batch_size=batch_size, progress=False, **generate_kwargs)
        return texts
