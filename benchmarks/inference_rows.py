"""The rows of the inference benchmark: how each configuration is built and called.

A row is a model plus a ``runner(prompts, tenants, generate_kwargs)`` that returns the call to
time. Every row works on its own module tree over the *shared* backbone weights
(:func:`benchmarks.common.shared_copy`), so the backbone is loaded once per run and all rows
can stay alive together; only merged LoRA, which writes into the weights, has its own copy.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from benchmarks.common import count_adapter_parameters, perturb_adapters, shared_copy
from methods import IA3, LoRA, PaperIA3, Parade, PeftMethod, export_peft
from methods.adapter_files import AdapterFile
from parade_lightning import generate
from parade_lightning.multitenant import MultiTenantModel

SINGLE: dict[str, str] = {
    "base": "base (no adapter)",
    "lora": "LoRA r=4, 7 roles (unmerged)",
    "lora-merged": "LoRA r=4, 7 roles (merged)",
    "ia3": "IA3 (k v d)",
    "ia3-paper": "IA3 paper (dim 16, q k u)",
    "parade": "PARADE (r 12, q v u)",
    "base-compiled": "base, compiled decode (static cache)",
    "parade-compiled": "PARADE, compiled decode (static cache)",
}
TENANT: dict[str, str] = {
    "mt-parade": "PARADE · MultiTenantModel",
    "mt-ia3": "IA3 · MultiTenantModel",
    "mt-lora": "LoRA r=4 · MultiTenantModel",
    "peft-lora": "PEFT LoRA r=4 · adapter_names",
    "mt-parade-compiled": "PARADE · MultiTenantModel, compiled decode",
}
# rows served through generate(..., compile=...): what they compare against is the key without
# the suffix (same adapter weights: same noise seed)
COMPILED_SUFFIX = "-compiled"
FACTORIES: dict[str, Callable[[], PeftMethod]] = {
    "lora": lambda: LoRA(r=4), "lora-merged": lambda: LoRA(r=4), "ia3": IA3,
    "ia3-paper": PaperIA3, "parade": Parade, "mt-parade": Parade, "mt-ia3": IA3,
    "mt-lora": lambda: LoRA(r=4), "peft-lora": lambda: LoRA(r=4),
    "parade-compiled": Parade, "mt-parade-compiled": Parade,
}
# runner(prompts, tenants, generate kwargs) -> the call to time
Runner = Callable[[list[list[int]], "int | None", dict[str, Any]], Callable[[], Any]]


@dataclass
class Served:
    """One benchmark row: what to hook for timing and how to call it."""

    key: str
    label: str
    mode: str  # "single" or "multi-tenant"
    hooked: nn.Module  # the causal LM whose forwards the clock hooks
    parameters: int  # adapter parameters (per tenant for multi-tenant rows)
    runner: Runner


def tenant_names(batch: int, tenants: int) -> list[str]:
    """Row ``i`` of the batch belongs to tenant ``t{i mod tenants}``."""
    return [f"t{i % tenants}" for i in range(batch)]


def make_tenants(
    model: nn.Module, factory: Callable[[], PeftMethod], count: int, backbone: str, noise: float,
) -> tuple[list[AdapterFile], nn.Module]:
    """``count`` tenants' adapters of one method, each its init plus its own noise.

    Returns the adapters and the scratch model they were made on (the method attached), which
    PEFT export needs.
    """
    scratch = shared_copy(model)
    torch.manual_seed(0)  # the same initial adapter (LoRA's A) in every run
    method = factory()
    method.attach(scratch)
    initial = method.adapter_state_dict(scratch)
    config = {"class_path": method.class_path(), "init_args": method.config()}
    files = []
    for i in range(count):
        generator = torch.Generator().manual_seed(100 + i)
        state = {k: v + (torch.randn(v.shape, generator=generator) * noise).to(v)
                 for k, v in initial.items()}
        files.append(AdapterFile(config, state, backbone, f"benchmark tenant t{i}"))
    return files, scratch


def compile_option(key: str, args: argparse.Namespace) -> bool | str:
    """``compile=`` of a row: the ``--compile-backend`` for ``…-compiled`` rows, else off."""
    if not key.endswith(COMPILED_SUFFIX):
        return False
    return True if args.compile_backend == "inductor" else args.compile_backend


def _plain_runner(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, adapter_names: bool = False,
    compile: bool | str = False,
) -> Runner:
    """Calls :func:`parade_lightning.generate`; ``adapter_names``: PEFT's per-row adapters."""
    def runner(prompts: list[list[int]], tenants: int | None, kw: dict[str, Any]):
        if adapter_names:
            kw = {**kw, "adapter_names": tenant_names(len(prompts), tenants or 1)}
        return lambda: generate(model, tokenizer, prompts, batch_size=len(prompts),
                                progress=False, compile=compile, **kw)
    return runner


def build(
    key: str, model: nn.Module, tokenizer: PreTrainedTokenizerBase, args: argparse.Namespace,
    scratch_dir: Path,
) -> Served:
    """Build row ``key`` on top of the bare backbone ``model``."""
    compile = compile_option(key, args)
    if key in ("base", "base-compiled"):
        # its own module tree: the compiled call and the timing hooks stay on this row
        row = shared_copy(model)
        return Served(key, SINGLE[key], "single", row, 0,
                      _plain_runner(row, tokenizer, compile=compile))
    factory = FACTORIES[key]
    if key in SINGLE:
        # merging writes into the weights, so that row gets its own copy of them
        row = copy.deepcopy(model) if key == "lora-merged" else shared_copy(model)
        factory().attach(row)
        perturb_adapters(row, args.noise, seed=0)
        if key == "lora-merged":
            row.peft_method.merge(row)
        return Served(key, SINGLE[key], "single", row, count_adapter_parameters(row),
                      _plain_runner(row, tokenizer, compile=compile))
    files, scratch = make_tenants(model, factory, args.tenant_batch, args.backbone, args.noise)
    per_tenant = count_adapter_parameters(scratch)
    if key == "peft-lora":
        return _peft_row(key, model, tokenizer, files, scratch, scratch_dir, per_tenant)
    served = MultiTenantModel(shared_copy(model), tokenizer, args.backbone, compile=compile)
    for i, adapter in enumerate(files):
        served.add_tenant(f"t{i}", adapter)

    def runner(prompts: list[list[int]], tenants: int | None, kw: dict[str, Any]):
        names = tenant_names(len(prompts), tenants or 1)
        return lambda: served.generate(prompts, tenants=names, batch_size=len(prompts), **kw)

    return Served(key, TENANT[key], "multi-tenant", served.model, per_tenant, runner)


def _peft_row(
    key: str, model: nn.Module, tokenizer: PreTrainedTokenizerBase, files: list[AdapterFile],
    scratch: nn.Module, scratch_dir: Path, per_tenant: int,
) -> Served:
    """PEFT's LoRA with one adapter per tenant, mixed per row through ``adapter_names``."""
    from peft import PeftModel

    folders = []
    for i, adapter in enumerate(files):
        scratch.peft_method.load_adapter_state_dict(scratch, adapter.state)
        folders.append(export_peft(scratch, scratch_dir / f"peft_t{i}"))
    peft_model = PeftModel.from_pretrained(shared_copy(model), folders[0], adapter_name="t0")
    for i, folder in enumerate(folders[1:], start=1):
        peft_model.load_adapter(folder, adapter_name=f"t{i}")
    peft_model.eval()
    return Served(key, TENANT[key], "multi-tenant", peft_model.get_base_model(), per_tenant,
                  _plain_runner(peft_model, tokenizer, adapter_names=True))
