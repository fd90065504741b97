"""The method plugin API: :class:`PeftMethod` and the :class:`AdapterModule` it installs.

A method's ``__init__`` signature *is* its configuration: every argument is stored as an
attribute of the same name, so :meth:`PeftMethod.config` can rebuild it and LightningCLI /
jsonargparse can show it as YAML (``class_path: methods.LoRA``, ``init_args: {r: 4}``).

A method installs :class:`AdapterModule` children on the backbone's projection modules (or its
decoder layers) and reaches the hidden states through forward hooks, so the backbone's own
module tree and state-dict keys stay as Hugging Face made them. Adapter modules hold only the
method's parameters; they are found structurally (``isinstance``), never by name.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from methods.adapter_files import save_pretrained
from methods.architectures import ROLES, get_architecture
from methods.lm_loss import response_loss


class AdapterModule(nn.Module):
    """Base of every module a method adds to the backbone.

    Args:
        layer: index of the decoder layer the module belongs to (for budget reports).
    """

    def __init__(self, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def hook_output(self, host: nn.Module, fn) -> None:
        """Run ``fn(module, args, output)`` after ``host.forward`` (may return a new output)."""
        self._handles.append(host.register_forward_hook(fn))

    def hook_input(self, host: nn.Module, fn) -> None:
        """Run ``fn(module, args)`` before ``host.forward`` (may return new args)."""
        self._handles.append(host.register_forward_pre_hook(fn))

    def set_channels(self, role: str, channels: torch.Tensor | None) -> None:
        """Remember which host output channels hold ``role`` (a buffer, so it moves devices)."""
        self.register_buffer(f"channels_{role}", channels, persistent=False)

    def channels(self, role: str) -> torch.Tensor | None:
        return getattr(self, f"channels_{role}")

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def parameter_roles(self) -> list[tuple[str, str, int]]:
        """``(group, role, count)`` rows for budget reports.

        The default reads the names: a parameter stored under a role key
        (``A.q`` in a ``ParameterDict``) belongs to that role, others are ``shared``.
        """
        rows = []
        for name, param in self.named_parameters():
            parts = name.split(".")
            role = parts[-1] if parts[-1] in ROLES else "shared"
            group = ".".join(p for p in parts if p not in ROLES)
            rows.append((group, role, param.numel()))
        return rows


class PeftMethod:
    """Base class of PEFT methods (the extension point; see docs/design.md, "Adding a method").

    Subclasses implement :meth:`install`; everything else (freezing, fp32, state dicts,
    counting) is shared. Subclasses store each ``__init__`` argument under its own name.
    """

    #: Batch keys this method needs in the adapted model's forward besides ``input_ids``,
    #: ``attention_mask`` and ``labels`` (PARADE: ``("prompt_mask",)``). Callers pass
    #: ``**method.forward_inputs(batch)``; a root hook installed by :meth:`attach` takes them
    #: out of the forward's keyword arguments and hands them to :meth:`begin_forward`.
    batch_keys: ClassVar[tuple[str, ...]] = ()

    #: The ``__init__`` argument that sizes the method (``rank``, ``r``, ``dim``…), which
    #: budget matching solves; ``None``: a fixed size. See :meth:`sized`.
    size_knob: ClassVar[str | None] = None

    #: Whether the method's math broadcasts over a leading per-row dimension of its parameters,
    #: which :class:`parade_lightning.multitenant.MultiTenantModel` relies on to mix tenants.
    per_row_weights: ClassVar[bool] = True

    # ---------------------------------------------------------------- to implement
    def install(self, model: nn.Module) -> None:
        """Create the adapter modules and hooks on a frozen ``model``."""
        raise NotImplementedError

    def begin_forward(self, model: nn.Module, kwargs: dict[str, Any],
                      inputs: dict[str, Any]) -> None:
        """Called before every forward of the adapted model with the forward's keyword
        arguments and this method's :attr:`batch_keys` values (``None`` when not given, as in
        :func:`~parade_lightning.generate`'s decode steps). Default: nothing."""

    @contextlib.contextmanager
    def generating(self, model: nn.Module, attention_mask: torch.Tensor) -> Iterator[None]:
        """Wrap one ``model.generate`` call (:func:`~parade_lightning.generate` enters it).

        ``attention_mask`` is the prompts' ``(B, T)`` mask, before any beam expansion. A
        method validates here, once and on the host, what its forward would otherwise have to
        check with a host sync (PARADE: every row has a prompt token), and may tell its layers
        which forward is the prefill, so the traced forward needs no data-dependent branch.
        Default: nothing."""
        yield

    @classmethod
    def knob(cls, init_args: dict[str, Any]) -> str | None:
        """The knob budget matching solves for these ``init_args`` (default
        :attr:`size_knob`; :class:`methods.FromPeft` answers per PEFT type)."""
        return cls.size_knob

    def on_fit_start(self, model: nn.Module, total_steps: int) -> None:
        """Training hook: called once before training with the run's optimiser steps
        (``Trainer.estimated_stepping_batches``). Default: nothing."""

    def on_optimizer_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Training hook: called after every optimiser step (``step`` counts from 0; the step's
        gradients are still on the parameters), e.g. AdaLoRA's rank allocation. Default:
        nothing."""

    def training_state(self, model: nn.Module) -> dict[str, Any]:
        """Method state besides the parameters that a resumed run needs (tensors, numbers,
        strings, lists and dicts only: checkpoints load with ``weights_only=True``)."""
        return {}

    def load_training_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Restore :meth:`training_state` when a run resumes. Default: nothing."""

    @classmethod
    def sized(cls, init_args: dict[str, Any], value: int) -> dict[str, Any]:
        """Complete ``init_args`` with the :attr:`size_knob` set to ``value`` (what budget
        matching counts). Override to keep dependent arguments consistent (LoRA keeps
        ``alpha / r``, PARADE keeps ``num_capsules`` a divisor of ``rank``)."""
        if cls.size_knob is None:
            raise ValueError(f"{cls.__name__} has a fixed size (no size_knob); it cannot be "
                             "matched to a parameter budget")
        return {**init_args, cls.size_knob: value}

    # ---------------------------------------------------------------- shared
    def forward_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The extra forward keyword arguments this method needs, taken from ``batch``."""
        missing = [key for key in self.batch_keys if key not in batch]
        if missing:
            raise KeyError(f"{type(self).__name__} needs batch keys {missing}; the batch has "
                           f"{sorted(batch)}")
        return {key: batch[key] for key in self.batch_keys}

    def training_loss(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """The loss :class:`~parade_lightning.PeftLitModule` trains and validates on: the mean
        cross-entropy of the response tokens (:func:`methods.lm_loss.response_loss`, which
        projects only the scored positions onto the vocabulary). Override it to add a term."""
        return response_loss(model, batch["labels"], input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"], **self.forward_inputs(batch))

    def attach(self, model: nn.Module) -> nn.Module:
        """Freeze ``model``, install this method's modules in place (fp32) and return it."""
        if getattr(model, "peft_method", None) is not None:
            raise RuntimeError(
                f"the model already carries {type(model.peft_method).__name__}; load a fresh "
                "backbone to attach another method"
            )
        get_architecture(model)  # clear error for unsupported model types
        model.requires_grad_(False)
        self.install(model)
        if self.batch_keys:
            model.add_module("peft_inputs", ForwardInputs(model, self))
        for _, adapter in self.adapters(model):
            adapter.to(torch.float32)  # bf16 vectors near 1.0 would swallow AdamW updates
            adapter.requires_grad_(True)
        model.peft_method = self
        return model

    @staticmethod
    def adapters(model: nn.Module) -> list[tuple[str, AdapterModule]]:
        """The installed adapter modules with their full names (outermost only)."""
        found: list[tuple[str, AdapterModule]] = []
        for name, module in model.named_modules():
            # pre-order: an adapter nested in another comes right after it, among its children
            inside = found and name.startswith(found[-1][0] + ".")
            if isinstance(module, AdapterModule) and not inside:
                found.append((name, module))
        return found

    def named_adapter_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        for prefix, adapter in self.adapters(model):
            for name, param in adapter.named_parameters():
                yield f"{prefix}.{name}", param

    def adapter_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The method's parameters only, keyed by their full names in ``model``."""
        return {name: p.detach().clone() for name, p in self.named_adapter_parameters(model)}

    def load_adapter_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load adapter weights; missing, unexpected or mis-shaped entries are an error."""
        own = dict(self.named_adapter_parameters(model))
        self.check_adapter_state(own, state)
        with torch.no_grad():
            for name, param in own.items():
                param.copy_(state[name].to(param.dtype))

    def check_adapter_state(
        self, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
    ) -> None:
        """Raise one clear error listing every missing, unexpected or mis-shaped entry."""
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} keys (first: {missing[:3]})")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)} keys (first: {unexpected[:3]})")
        for name in sorted(set(own) & set(state)):
            if tuple(own[name].shape) != tuple(state[name].shape):
                problems.append(
                    f"{name}: adapter has shape {tuple(own[name].shape)}, "
                    f"file has {tuple(state[name].shape)}"
                )
        if problems:
            raise ValueError(
                f"adapter weights do not fit this {type(self).__name__} "
                f"({self.config()}): " + "; ".join(problems)
            )

    def parameter_rows(self, model: nn.Module) -> list[tuple[int, str, str, int]]:
        """``(layer, group, role, count)`` of every parameter, for budget reports (default:
        each adapter module's :meth:`AdapterModule.parameter_roles`)."""
        return [(adapter.layer, group, role, count) for _, adapter in self.adapters(model)
                for group, role, count in adapter.parameter_roles()]

    @staticmethod
    def save_pretrained(model: nn.Module, folder: str | Path, backbone: str | None = None,
                        card: dict[str, Any] | None = None) -> Path:
        """``Parade.save_pretrained(model, folder)``: the attached method's adapter folder
        (:func:`methods.adapter_files.save_pretrained`; load it with
        :func:`methods.pretrained.load_pretrained`)."""
        return save_pretrained(model, folder, backbone, card)

    def num_trainable_parameters(self, model: nn.Module) -> int:
        return sum(p.numel() for _, p in self.named_adapter_parameters(model))

    def config(self) -> dict[str, Any]:
        """The ``__init__`` arguments, read back from the attributes of the same name."""
        params = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in params if name != "self"}

    def class_path(self) -> str:
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def to_config(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}`` as plain data (tuples as lists), the form configs,
        checkpoints and adapter files hold and 
        :func:`methods.registry.method_from_config` reads."""
        init_args = {k: list(v) if isinstance(v, tuple) else v for k, v in self.config().items()}
        return {"class_path": self.class_path(), "init_args": init_args}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class ForwardInputs(AdapterModule):
    """Root hook of a method with :attr:`PeftMethod.batch_keys`: takes those keyword arguments
    out of the model's forward (Hugging Face models would reject them) and passes them, with
    the remaining keyword arguments, to :meth:`PeftMethod.begin_forward`."""

    def __init__(self, model: nn.Module, method: PeftMethod) -> None:
        super().__init__(-1)
        object.__setattr__(self, "_method", method)  # not a submodule
        self._handles.append(model.register_forward_pre_hook(self._take, with_kwargs=True))

    def _take(self, model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        method: PeftMethod = self._method
        inputs = {key: kwargs.pop(key, None) for key in method.batch_keys}
        method.begin_forward(model, kwargs, inputs)
        return args, kwargs


def scatter_scale(
    out_features: int, parts: list[tuple[torch.Tensor | None, torch.Tensor]]
) -> torch.Tensor:
    """One scale over a host module's whole output from per-role vectors.

    Args:
        out_features: the host's output width.
        parts: ``(channels, vector)`` per role; ``vector`` is ``(..., width)`` and lands on
            ``channels`` of the output (a lone part with ``None`` channels is the whole output).

    Returns:
        ``(..., out_features)``: the vectors on their channels, ones on untargeted channels.
    """
    if len(parts) == 1 and parts[0][0] is None:
        return parts[0][1]
    first = parts[0][1]
    full = first.new_ones(*first.shape[:-1], out_features)  # (..., out)
    for channels, vector in parts:
        full = full.index_copy(-1, channels, vector)
    return full


def rescale(hidden: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``hidden * scale``; in place when no gradient is tracked (inference, decoding).

    A projection's output is a fresh tensor that nothing else holds yet, so scaling it in
    place is safe and saves an allocation per hooked module and step (measured: PARADE's
    prefill overhead at batch 1 fell from +8.4 % to +5.8 % on SmolLM2). Under autograd the
    unscaled value is needed for the scale's gradient, so training multiplies out of place.
    """
    if torch.is_grad_enabled():
        return hidden * scale.to(hidden.dtype)
    return hidden.mul_(scale)


def uniform_with_std(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Uniform init with mean 0 and the given standard deviation (``U(-a, a)``, a = std·√3)."""
    bound = std * 3**0.5
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)
