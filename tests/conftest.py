"""Shared fixtures: tiny offline backbones, the method zoo, and forward helpers."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from datamodule_fixtures import offline_data, tok  # noqa: E402, F401  (shared fixtures)

from methods import IA3, LoRA, PaperIA3, Parade, Parade1, Parade2, Parade3, Parade4  # noqa: E402
from methods.backbones import load_backbone  # noqa: E402

ARCHS = ("tiny-llama", "tiny-gpt2", "tiny-gpt-neox")


def method_zoo(arch: str) -> dict[str, object]:
    """Every method (and the ablations) configured for an architecture."""
    no_gate = arch != "tiny-llama"
    return {
        "lora": LoRA(),
        "lora_qv": LoRA(targets=("q", "v")),
        "ia3": IA3(),
        "ia3_paper": PaperIA3(),
        "parade": Parade(),
        "parade1": Parade1(),
        "parade2": Parade2(),
        "parade3": Parade3(targets=("q", "k", "v", "u")) if no_gate else Parade3(),
        "parade4": Parade4(),
        "parade_normed": Parade(input="normed"),
    }


METHOD_IDS = tuple(method_zoo("tiny-llama"))


def tiny(arch: str):
    model, tokenizer = load_backbone(arch)
    return model, tokenizer


def run(model, input_ids, attention_mask=None, prompt=None, **kwargs):
    """Forward of a batch in the collator's format (``prompt`` = its prompt-token mask): the
    method takes what it needs from the batch through ``forward_inputs``."""
    method = getattr(model, "peft_method", None)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "prompt_mask": prompt}
    extra = method.forward_inputs(batch) if method is not None else {}
    return model(input_ids=input_ids, attention_mask=attention_mask, **extra, **kwargs)


def toy_batch(seed: int = 0, batch: int = 3, length: int = 12):
    """Token ids with left padding on row 0 and a prompt span of different lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 250, (batch, length), generator=g)
    attention = torch.ones_like(ids)
    attention[0, :3] = 0
    prompt = torch.zeros_like(ids, dtype=torch.bool)
    prompt[0, 3:8] = True
    for row in range(1, batch):
        prompt[row, : 4 + row] = True
    return ids, attention, prompt


def perturb(model, scale: float = 0.3, seed: int = 1) -> None:
    """Give every adapter parameter non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.peft_method.named_adapter_parameters(model):
            p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param
