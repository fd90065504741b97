"""The shared contract: every method × every tiny architecture (docs/design.md, methods)."""

from __future__ import annotations

import pytest
import torch
from conftest import ARCHS, METHOD_IDS, method_zoo, perturb, run, tiny, toy_batch

from methods.architectures import find_sites

CASES = [(a, m) for a in ARCHS for m in METHOD_IDS]


def attached(arch: str, method_id: str, seed: int = 0):
    torch.manual_seed(seed)
    model, _ = tiny(arch)
    method = method_zoo(arch)[method_id]
    method.attach(model)
    return model, method


@pytest.mark.parametrize(("arch", "method_id"), CASES)
def test_identity_at_init(arch, method_id):
    base, _ = tiny(arch)
    model, _ = attached(arch, method_id)
    ids, attention, prompt = toy_batch()
    expected = base(input_ids=ids, attention_mask=attention).logits
    got = run(model, ids, attention, prompt).logits
    assert torch.equal(got, expected)


@pytest.mark.parametrize(("arch", "method_id"), CASES)
def test_only_adapter_parameters_train_and_stay_fp32(arch, method_id):
    model, method = attached(arch, method_id)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapter = {n for n, _ in method.named_adapter_parameters(model)}
    assert trainable == adapter and adapter
    assert all(p.dtype == torch.float32 for _, p in method.named_adapter_parameters(model))
    assert method.num_trainable_parameters(model) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )


@pytest.mark.parametrize(("arch", "method_id"), CASES)
def test_one_step_changes_only_adapter(arch, method_id):
    model, method = attached(arch, method_id)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids, attention, prompt = toy_batch()
    labels = ids.masked_fill(prompt | (attention == 0), -100)
    params = [p for _, p in method.named_adapter_parameters(model)]
    opt = torch.optim.AdamW(params, lr=1e-2)
    run(model, ids, attention, prompt, labels=labels).loss.backward()
    opt.step()
    adapter = {n for n, _ in method.named_adapter_parameters(model)}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= adapter


@pytest.mark.parametrize(("arch", "method_id"), CASES)
def test_adapter_state_round_trip(arch, method_id):
    model, method = attached(arch, method_id)
    perturb(model)
    ids, attention, prompt = toy_batch()
    expected = run(model, ids, attention, prompt).logits
    state = method.adapter_state_dict(model)
    fresh, method2 = attached(arch, method_id, seed=123)
    assert not torch.equal(run(fresh, ids, attention, prompt).logits, expected)
    method2.load_adapter_state_dict(fresh, state)
    assert torch.equal(run(fresh, ids, attention, prompt).logits, expected)


def _capture(module):
    seen = {}
    handle = module.register_forward_hook(lambda m, a, out: seen.setdefault("out", out.detach()))
    return seen, handle


@pytest.mark.parametrize("arch", ["tiny-gpt2", "tiny-gpt-neox"])
@pytest.mark.parametrize("method_id", ["lora_qv", "parade4"])
def test_fused_modules_change_only_intended_channels(arch, method_id):
    """q/v adapters on a fused QKV module leave the K channels bit-identical."""
    base, _ = tiny(arch)
    model, _ = attached(arch, method_id)
    perturb(model)
    sites = {s.role: s for s in find_sites(model, ("q", "k", "v")) if s.layer == 0}
    base_sites = {s.role: s for s in find_sites(base, ("q", "k", "v")) if s.layer == 0}
    seen, h1 = _capture(sites["q"].module)
    seen_base, h2 = _capture(base_sites["q"].module)
    ids, attention, prompt = toy_batch()
    run(model, ids, attention, prompt)
    base(input_ids=ids, attention_mask=attention)
    h1.remove(), h2.remove()
    for role, must_change in (("q", True), ("k", False), ("v", True)):
        ch = sites[role].channels
        diff = (seen["out"][..., ch] - seen_base["out"][..., ch]).abs().max().item()
        assert (diff > 1e-4) if must_change else diff == 0.0, (role, diff)


def test_ia3_on_fused_module_scales_only_its_roles():
    model, method = attached("tiny-gpt2", "ia3")
    base, _ = tiny("tiny-gpt2")
    perturb(model)
    # ia3 default targets k, v (+ d input): q channels of c_attn must equal the base's
    site = next(s for s in find_sites(model, ("q",)) if s.layer == 0)
    seen, h1 = _capture(site.module)
    seen_base, h2 = _capture(next(s for s in find_sites(base, ("q",)) if s.layer == 0).module)
    ids, attention, _ = toy_batch()
    model(input_ids=ids, attention_mask=attention)
    base(input_ids=ids, attention_mask=attention)
    h1.remove(), h2.remove()
    assert torch.equal(seen["out"][..., site.channels], seen_base["out"][..., site.channels])


@pytest.mark.parametrize(("arch", "method_id"), CASES)
def test_removing_the_hooks_gives_the_backbone_back(arch, method_id):
    base, _ = tiny(arch)
    model, method = attached(arch, method_id)
    perturb(model)
    ids, attention, prompt = toy_batch()
    expected = base(input_ids=ids, attention_mask=attention).logits
    assert not torch.equal(run(model, ids, attention, prompt).logits, expected)
    for _, adapter in method.adapters(model):
        for module in adapter.modules():
            if hasattr(module, "remove_hooks"):
                module.remove_hooks()
    assert torch.equal(model(input_ids=ids, attention_mask=attention).logits, expected)
