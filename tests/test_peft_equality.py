"""LoRA and (IA)³ exported to PEFT give the same logits as ours (max |Δ| ≤ 1e-5, fp32)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ARCHS, perturb, tiny, toy_batch
from peft import PeftModel

from methods import IA3, LoRA, PaperIA3, Parade, export_peft

METHODS = {
    "lora_all": lambda: LoRA(r=4, alpha=8.0),
    "lora_qv": lambda: LoRA(r=2, alpha=5.0, targets=("q", "v")),
    "ia3_default": lambda: IA3(),
    "ia3_qv": lambda: IA3(targets=("q", "v"), feedforward=()),
    "ia3_budgeted": lambda: PaperIA3(),
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", list(METHODS))
def test_export_matches_peft(arch, name, tmp_path):
    torch.manual_seed(0)
    model, _ = tiny(arch)
    METHODS[name]().attach(model)
    perturb(model)
    ids, attention, _ = toy_batch()
    ours = model(input_ids=ids, attention_mask=attention).logits
    export_peft(model, tmp_path, base_model_name_or_path=arch)
    base, _ = tiny(arch)
    theirs = PeftModel.from_pretrained(base, tmp_path)(input_ids=ids, attention_mask=attention)
    assert (ours - theirs.logits).abs().max().item() <= 1e-5
    plain, _ = tiny(arch)
    assert (ours - plain(input_ids=ids, attention_mask=attention).logits).abs().max() > 1e-3


def test_fused_lora_becomes_one_peft_module_with_right_ranks(tmp_path):
    model, _ = tiny("tiny-gpt2")
    LoRA(r=2, alpha=5.0, targets=("q", "v", "o")).attach(model)
    export_peft(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["lora_alpha"] == 5.0
    fused = [k for k in config["rank_pattern"] if "c_attn" in k]
    assert len(fused) == 2  # one per layer
    assert all(config["rank_pattern"][k] == 4 and config["alpha_pattern"][k] == 10.0 for k in fused)
    assert not any("c_proj" in k for k in config["rank_pattern"])


def test_ia3_export_puts_ones_on_untargeted_channels(tmp_path):
    from safetensors.torch import load_file

    model, _ = tiny("tiny-gpt-neox")
    IA3(targets=("v",), feedforward=()).attach(model)
    perturb(model)
    export_peft(model, tmp_path)
    vec = next(iter(load_file(tmp_path / "adapter_model.safetensors").values())).flatten()
    assert vec.numel() == 3 * 32
    assert int((vec == 1.0).sum()) == 2 * 32  # q and k channels (interleaved per head)


def test_export_refuses_parade(tmp_path):
    model, _ = tiny("tiny-llama")
    Parade().attach(model)
    with pytest.raises(TypeError, match="LoRA and IA3"):
        export_peft(model, tmp_path)


def test_lora_merge_unmerge():
    model, _ = tiny("tiny-gpt2")
    method = LoRA(targets=("q", "v", "u"))
    method.attach(model)
    perturb(model)
    ids, attention, _ = toy_batch()
    before = model(input_ids=ids, attention_mask=attention).logits
    weight = model.transformer.h[0].attn.c_attn.weight
    original = weight.detach().clone()
    method.merge(model)
    merged = model(input_ids=ids, attention_mask=attention).logits
    assert (merged - before).abs().max() < 1e-5
    assert (weight - original).abs().max() > 1e-3  # the update is in the weight now
    method.unmerge(model)
    assert (model(input_ids=ids, attention_mask=attention).logits - before).abs().max() < 1e-5
    assert (weight - original).abs().max() < 1e-6
