"""``FromPeft``: any Hugging Face PEFT configuration as a :class:`~methods.PeftMethod`.

The paper's baselines (section 4.1, appendix E) besides LoRA and (IA)³ come from the PEFT
library (Mangrulkar et al., 2022): AdaLoRA (tables 1-3: initial rank 8, half of the rank
budget pruned), prompt tuning / P-tuning (64 soft tokens) and prefix tuning = P-tuning v2 (64
tokens at every layer). ``FromPeft`` trains them inside :class:`parade_lightning.PeftLitModule`
like the built-in methods::

    model:
      method:
        class_path: methods.FromPeft
        init_args:
          peft_type: ADALORA
          peft_config: {init_r: 8, target_r: 4, target_modules: [q, k, v, o, g, u, d]}

``target_modules`` (and (IA)³'s ``feedforward_modules``) are **role letters** (section 3.1),
translated to module names through the role table (:mod:`methods.architectures`); absent, every
role the architecture has is targeted (as :class:`methods.LoRA`).

How PEFT's injection fits the method contract:

* PEFT builds its ``PeftModelForCausalLM`` around the backbone. Tuners (AdaLoRA, LoRA, LoHa…)
  replace the targeted projections *inside* the backbone; prompt learning keeps its encoder in
  the wrapper, and ``FromPeft`` registers that encoder on the backbone as an
  :class:`~methods.AdapterModule` (``peft_prompt``), so device moves and state dicts see it.
* The backbone stays the model the LightningModule holds. A tuner's ``forward`` is routed
  through PEFT's wrapper (which adds AdaLoRA's orthogonal regulariser to the loss; the
  wrapper's own call into the backbone reaches the backbone's class ``forward``); ``generate``
  needs nothing, the tuner layers sit in the backbone. Prompt learning works in a forward
  pre-hook of the backbone (:meth:`FromPeft._prompt_inputs`): soft tokens before the input
  embeddings or the prefix in the KV cache at prefill, masks and positions shifted at every
  step, so training, greedy and beam search agree (tested against the teacher-forced forward).
* The method's parameters are the ones PEFT made trainable, recorded by name at install time;
  :meth:`named_adapter_parameters`, state dicts, counts and checkpoints use that list.
* AdaLoRA's rank allocator runs after every optimiser step (:meth:`on_optimizer_step`, wired by
  the LightningModule), with ``total_step`` taken from the trainer unless the config fixes it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from peft import PeftModelForCausalLM, PromptLearningConfig, get_peft_config
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from methods.architectures import (
    ROLE_NAMES,
    ROLES,
    available_roles,
    find_sites,
    get_architecture,
    sites_by_module,
)
from methods.base import AdapterModule, PeftMethod

#: PEFT type -> (the integer field that sizes it, fields kept proportional to it).
SIZE_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ADALORA": ("init_r", ("target_r",)),
    "LORA": ("r", ("lora_alpha",)),
    "LOHA": ("r", ("alpha",)),
    "LOKR": ("r", ("alpha",)),
    "VERA": ("r", ()),
    "PROMPT_TUNING": ("num_virtual_tokens", ()),
    "P_TUNING": ("num_virtual_tokens", ()),
    "PREFIX_TUNING": ("num_virtual_tokens", ()),
}
#: PEFT types that cannot work in this pipeline, and why (a clear error at construction).
UNSUPPORTED: dict[str, str] = {
    "MULTITASK_PROMPT_TUNING": "it needs per-example task_ids, which no task provides",
    "POLY": "it needs per-example task_ids, which no task provides",
    "CPT": "it needs CPT's per-token input_type_mask and its own loss",
    "CARTRIDGE": "it needs a precomputed KV cache as initialisation",
    "ADAPTION_PROMPT": "it targets whole attention modules, not the role table's projections",
    "LN_TUNING": "it targets normalisation layers, not the role table's projections",
    "TRAINABLE_TOKENS": "it targets the embedding, not the role table's projections",
    "XLORA": "it needs its own classifier over separately trained LoRA adapters",
}


def _field_default(peft_type: str, name: str) -> Any:
    for f in dataclasses.fields(PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]):
        if f.name == name:
            return f.default
    return None


class PromptEncoder(AdapterModule):
    """Holds a prompt-learning method's encoder (PEFT's ``prompt_encoder``) on the backbone."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(-1)
        self.encoder = encoder


class FromPeft(PeftMethod):
    """A Hugging Face PEFT method (``peft_type`` + its config) as a PARADE-Lightning method.

    Args:
        peft_type: PEFT's name of the method: ``ADALORA``, ``PROMPT_TUNING``,
            ``PREFIX_TUNING``, ``P_TUNING``, ``LORA``, ``IA3``, ``LOHA``…
        peft_config: the fields of PEFT's config class for that type (``init_r``, ``target_r``,
            ``num_virtual_tokens``…). ``target_modules`` / ``feedforward_modules`` are role
            letters (``[q, v]`` or ``"qv"``), default every role. ``task_type`` is always
            ``CAUSAL_LM``. AdaLoRA: ``total_step`` defaults to the run's optimiser steps, and
            ``tinit`` / ``tfinal`` below 1 are fractions of them.
    """

    per_row_weights = False  # PEFT's layers take one weight matrix, not one per row

    def __init__(self, peft_type: str = "ADALORA",
                 peft_config: dict[str, Any] | None = None) -> None:
        self.peft_type = str(peft_type).upper()
        self.peft_config = dict(peft_config or {})
        if self.peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
            raise ValueError(f"FromPeft: unknown peft_type {peft_type!r}; PEFT knows "
                             f"{sorted(PEFT_TYPE_TO_CONFIG_MAPPING)}")
        if self.peft_type in UNSUPPORTED:
            raise ValueError(
                f"FromPeft({self.peft_type}) cannot work in this pipeline: "
                f"{UNSUPPORTED[self.peft_type]}. Projection tuners (ADALORA, LORA, IA3, LOHA, "
                "LOKR, OFT, BOFT, VERA…) and PROMPT_TUNING, P_TUNING, PREFIX_TUNING do")
        for key in ("task_type", "peft_type"):
            if key in self.peft_config:
                raise ValueError(f"FromPeft: peft_config.{key} is set by FromPeft; remove it")
        self._wrapper: PeftModelForCausalLM | None = None
        self._names: list[str] = []
        self._where: dict[str, tuple[int, str]] = {}
        self._inside = False
        self._virtual, self._cache_key = 0, "cache"

    # ---------------------------------------------------------------- sizing (budget matching)
    @classmethod
    def knob(cls, init_args: dict[str, Any]) -> str | None:
        peft_type = str(init_args.get("peft_type", "ADALORA")).upper()
        field = SIZE_FIELDS.get(peft_type)
        return f"peft_config.{field[0]}" if field else None

    @classmethod
    def sized(cls, init_args: dict[str, Any], value: int) -> dict[str, Any]:
        """Set the type's size field (``init_r``, ``r``, ``num_virtual_tokens``) to ``value``,
        scaling the fields tied to it (AdaLoRA's ``target_r``, LoRA's ``lora_alpha``)."""
        peft_type = str(init_args.get("peft_type", "ADALORA")).upper()
        if peft_type not in SIZE_FIELDS:
            raise ValueError(f"FromPeft({peft_type}) has a fixed size (no field in "
                             f"methods.from_peft.SIZE_FIELDS); it cannot be matched to a budget")
        field, tied = SIZE_FIELDS[peft_type]
        config = dict(init_args.get("peft_config") or {})
        old = config.get(field, _field_default(peft_type, field))
        for name in tied:
            current = config.get(name, _field_default(peft_type, name))
            scaled = current * value / old
            config[name] = max(1, round(scaled)) if isinstance(current, int) else scaled
        config[field] = value
        return {**init_args, "peft_type": peft_type, "peft_config": config}

    # ---------------------------------------------------------------- install
    def _roles(self, key: str, value: Any) -> tuple[str, ...]:
        letters = list(value)  # [q, v] or "qv"
        bad = [x for x in letters if x not in ROLES]
        if bad:
            raise ValueError(
                f"FromPeft({self.peft_type}): peft_config.{key} takes role letters {ROLES} "
                f"({ROLE_NAMES}); got {bad}. Module names are translated by "
                "methods/architectures.py")
        return tuple(letters)

    def _module_names(self, model: nn.Module, key: str, roles: tuple[str, ...]) -> list[str]:
        """The modules producing ``roles``; a fused module must be targeted whole."""
        names = []
        everything = sites_by_module(find_sites(model, available_roles(model)))
        for name, sites in sites_by_module(find_sites(model, roles)).items():
            have, need = [s.role for s in sites], [s.role for s in everything[name]]
            if have != need:
                raise ValueError(
                    f"FromPeft({self.peft_type}): peft_config.{key} has roles {have} but on "
                    f"{model.config.model_type} {need} share one module; PEFT adapts whole "
                    f"modules, so target all of {need} or none")
            names.append(name)
        return names

    def build_peft_config(self, model: nn.Module):
        """PEFT's config object for ``model`` (roles translated to module names)."""
        config = dict(self.peft_config)
        if not issubclass(PEFT_TYPE_TO_CONFIG_MAPPING[self.peft_type], PromptLearningConfig):
            roles = self._roles("target_modules",
                                config.get("target_modules") or available_roles(model))
            config["target_modules"] = self._module_names(model, "target_modules", roles)
            if config.get("feedforward_modules") is not None:
                ff = self._roles("feedforward_modules", config["feedforward_modules"])
                config["feedforward_modules"] = self._module_names(model, "feedforward_modules",
                                                                   ff)
            self._where = {s.name: (s.layer, "".join(x.role for x in group))
                           for group in sites_by_module(find_sites(model, roles)).values()
                           for s in group[:1]}
        if self.peft_type == "ADALORA":
            tinit, tfinal = (_steps(config.get(k, 0), 0) for k in ("tinit", "tfinal"))
            config["tinit"], config["tfinal"] = tinit, tfinal
            config.setdefault("total_step", None)
            if config["total_step"] is None:  # placeholder until the trainer says
                config["total_step"] = tinit + tfinal + 1
        try:
            return get_peft_config({"peft_type": self.peft_type, "task_type": "CAUSAL_LM",
                                    **config})
        except (TypeError, ValueError) as err:
            raise ValueError(f"FromPeft({self.peft_type}): invalid config {self.peft_config}: "
                             f"{err}") from None

    def install(self, model: nn.Module) -> None:
        get_architecture(model)
        config = self.build_peft_config(model)
        original_forward = model.forward
        try:
            wrapper = PeftModelForCausalLM(model, config)
        except (TypeError, ValueError, NotImplementedError) as err:
            raise ValueError(f"FromPeft({self.peft_type}): PEFT cannot build it on this "
                             f"{model.config.model_type} model: {err}") from None
        self._wrapper = wrapper
        if config.is_prompt_learning:
            model.add_module("peft_prompt", PromptEncoder(wrapper.prompt_encoder))
            self._virtual = config.num_virtual_tokens
            forward_args = inspect.signature(type(model).forward).parameters
            self._cache_key = "cache" if "cache" in forward_args else "past_key_values"
            model.register_forward_pre_hook(self._prompt_inputs, with_kwargs=True)
        else:  # tuners live in the backbone; the wrapper's forward adds e.g. AdaLoRA's loss term
            @functools.wraps(original_forward)
            def forward(*args: Any, **kwargs: Any) -> Any:
                if self._inside:  # the wrapper's own call into the backbone
                    return original_forward(*args, **kwargs)
                self._inside = True
                try:
                    return wrapper.forward(*args, **kwargs)
                finally:
                    self._inside = False

            model.forward = forward
        # PEFT's trainable parameters, less its bookkeeping ones (AdaLoRA's ``ranknum``, which a
        # move to the meta device would otherwise leave marked trainable)
        other = tuple(f"{name}.{attr}." for name, module in model.named_modules()
                      if isinstance(module, BaseTunerLayer) for attr in module.other_param_names)
        self._names = [n for n, p in model.named_parameters()
                       if p.requires_grad and not n.startswith(other)]
        if not self._names:
            raise ValueError(f"FromPeft({self.peft_type}): PEFT made no parameter trainable "
                             f"with config {self.peft_config}")
        with torch.no_grad():
            for _, param in self.named_adapter_parameters(model):
                param.data = param.data.to(torch.float32)  # as the built-ins: adapters in fp32

    def _prompt_inputs(self, model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Prompt learning in the backbone's own forward, so training, ``generate`` (greedy or
        beams) and decoding with a KV cache agree: the prefill gets the soft tokens in front of
        the input embeddings (prompt / P-tuning) or the prefix keys and values in the cache
        (prefix tuning); every step gets the attention mask, positions and cache positions
        shifted by the ``n`` virtual tokens. (PEFT 0.21's own ``generate`` with transformers 5
        drops the prefix and misplaces decode positions, so it is not used.)"""
        if args:
            kwargs, args = {"input_ids": args[0], **kwargs}, ()
        n, wrapper = self._virtual, self._wrapper
        prefix = self.peft_type == "PREFIX_TUNING"
        key = self._cache_key
        cache = kwargs.get(key)
        prefill = cache is None or cache.get_seq_length() == 0
        ids, embeds = kwargs.get("input_ids"), kwargs.get("inputs_embeds")
        rows = (ids if ids is not None else embeds).shape[0]
        mask = kwargs.get("attention_mask")
        if mask is not None:
            kwargs["attention_mask"] = torch.cat([mask.new_ones(rows, n), mask], dim=1)
        if prefill and prefix:
            prompt_cache = wrapper.get_prompt(rows)
            if cache is None:
                kwargs[key] = prompt_cache
            else:  # generate's own cache object: fill it with the prefix
                for index, layer in enumerate(prompt_cache.layers):
                    cache.update(layer.keys, layer.values, index)
        elif prefill:
            if embeds is None:
                embeds = wrapper.word_embeddings(ids)
            prompts = wrapper.get_prompt(rows).to(embeds.dtype)
            kwargs["inputs_embeds"], kwargs["input_ids"] = torch.cat([prompts, embeds], 1), None
            if kwargs.get("labels") is not None:
                labels = kwargs["labels"]
                kwargs["labels"] = torch.cat([labels.new_full((rows, n), -100), labels], 1)
            if kwargs.get("position_ids") is not None:
                first = torch.arange(n, device=embeds.device).expand(rows, n)
                kwargs["position_ids"] = torch.cat([first, kwargs["position_ids"] + n], 1)
            if kwargs.get("cache_position") is not None:
                position = kwargs["cache_position"]
                kwargs["cache_position"] = torch.arange(n + position.shape[0],
                                                        device=position.device)
            return args, kwargs
        for name in ("position_ids", "cache_position"):
            if kwargs.get(name) is not None:
                kwargs[name] = kwargs[name] + n
        return args, kwargs

    def training_loss(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """The model's own loss (PEFT's forward): it may add a term (AdaLoRA's orthogonal
        regulariser), and prompt learning lengthens the sequence by the virtual tokens, so the
        built-ins' scored-positions-only loss does not apply here."""
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"], use_cache=False, **self.forward_inputs(batch)).loss

    @property
    def peft_model(self) -> PeftModelForCausalLM:
        """PEFT's wrapper around the backbone (``save_pretrained`` writes a PEFT folder)."""
        if self._wrapper is None:
            raise ValueError("FromPeft is not attached to a model yet")
        return self._wrapper

    # ---------------------------------------------------------------- parameters
    def named_adapter_parameters(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        params = dict(model.named_parameters())
        for name in self._names:
            yield name, params[name]

    def parameter_rows(self, model: nn.Module) -> list[tuple[int, str, str, int]]:
        """``(layer, group, role, count)``: a tuner's parameters by the module they sit on
        (``lora_A`` on the ``q`` module of layer 3), a prompt encoder's as layer -1."""
        rows = []
        for name, param in self.named_adapter_parameters(model):
            host = max((h for h in self._where if name.startswith(h + ".")), key=len,
                       default=None)
            if host is None:
                group = re.sub(r"\.default(\.|$)", r"\1", name.removeprefix("peft_prompt."))
                rows.append((-1, group, "shared", param.numel()))
                continue
            layer, role = self._where[host]
            group = name[len(host) + 1:].split(".")[0]
            rows.append((layer, group, role if role in ROLES else "shared", param.numel()))
        return rows

    # ---------------------------------------------------------------- training hooks
    def _adalora(self):
        return self._wrapper.base_model if self.peft_type == "ADALORA" else None

    def on_fit_start(self, model: nn.Module, total_steps: int) -> None:
        """AdaLoRA: set ``total_step`` (and fractional ``tinit`` / ``tfinal``) from the run."""
        tuner = self._adalora()
        if tuner is None:
            return
        config = tuner.peft_config["default"]
        if self.peft_config.get("total_step") is None:
            config.total_step = int(total_steps)
        config.tinit = _steps(self.peft_config.get("tinit", 0), config.total_step)
        config.tfinal = _steps(self.peft_config.get("tfinal", 0), config.total_step)
        if config.tinit >= config.total_step - config.tfinal:
            raise ValueError(
                f"FromPeft(ADALORA): tinit={config.tinit} and tfinal={config.tfinal} leave no "
                f"rank-allocation phase in total_step={config.total_step} optimiser steps; "
                "lower peft_config.tinit / tfinal (fractions below 1 scale with the run)")

    def on_optimizer_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """AdaLoRA: update importance scores and prune ranks (``update_and_allocate``); the
        gradients of the step are still there."""
        tuner = self._adalora()
        if tuner is not None:
            tuner.update_and_allocate(step)

    def training_state(self, model: nn.Module) -> dict[str, Any]:
        """AdaLoRA's allocator state (importance EMAs, rank pattern) for resuming."""
        tuner = self._adalora()
        if tuner is None:
            return {}
        allocator = tuner.rankallocator
        return {"ipt": dict(allocator.ipt), "exp_avg_ipt": dict(allocator.exp_avg_ipt),
                "exp_avg_unc": dict(allocator.exp_avg_unc),
                "rank_pattern": tuner.peft_config["default"].rank_pattern}

    def load_training_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        tuner = self._adalora()
        if tuner is None or not state:
            return
        allocator = tuner.rankallocator
        allocator.ipt, allocator.exp_avg_ipt = dict(state["ipt"]), dict(state["exp_avg_ipt"])
        allocator.exp_avg_unc = dict(state["exp_avg_unc"])
        tuner.peft_config["default"].rank_pattern = state["rank_pattern"]


def _steps(value: float | int, total: int) -> int:
    """A step count, or a fraction (below 1) of ``total`` steps."""
    return int(round(value * total)) if 0 < value < 1 else int(value)
