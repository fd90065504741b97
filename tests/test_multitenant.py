"""Multi-tenant batches: every row equals its tenant's adapter alone (greedy, fp32)."""

from __future__ import annotations

import pytest
import torch
from conftest import perturb, tiny

from methods import IA3, LoRA, Parade
from methods.adapter_files import load_adapter, save_adapter
from parade_lightning.generation import generate
from parade_lightning.multitenant import MultiTenantModel

PROMPTS = ["The quick brown fox", "Hi", "A longer prompt about tenants", "Short", "x y z"]
GEN = dict(max_new_tokens=6, min_new_tokens=6)


def make_tenants(tmp_path, arch, factory, n=3):
    paths = []
    for i in range(n):
        model, _ = tiny(arch)
        factory().attach(model)
        perturb(model, scale=0.5, seed=10 + i)
        paths.append(save_adapter(model, tmp_path / f"t{i}", backbone=arch))
    return paths


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("factory", [Parade, IA3, lambda: LoRA(r=2)], ids=["parade", "ia3", "lora"])
def test_mixed_batch_rows_equal_single_tenant(tmp_path, arch, factory):
    paths = make_tenants(tmp_path, arch, factory)
    served = MultiTenantModel.from_backbone(arch)
    for i, p in enumerate(paths):
        served.add_tenant(f"t{i}", p)
    tenants = ["t0", "t1", "t2", "t1", "t0"]
    mixed = served.generate(PROMPTS, tenants=tenants, **GEN)
    for prompt, tenant, text in zip(PROMPTS, tenants, mixed, strict=True):
        alone, tok = tiny(arch)
        adapter = load_adapter(paths[int(tenant[1])])
        method = factory()
        method.attach(alone)
        method.load_adapter_state_dict(alone, adapter.state)
        assert generate(alone, tok, [prompt], **GEN) == [text]
    # tenants really differ (otherwise the test proves nothing)
    assert len(set(served.generate([PROMPTS[0]] * 3, tenants=["t0", "t1", "t2"], **GEN))) > 1


def test_mixed_batch_with_beams(tmp_path):
    paths = make_tenants(tmp_path, "tiny-llama", Parade, n=2)
    served = MultiTenantModel.from_backbone("tiny-llama")
    for i, p in enumerate(paths):
        served.add_tenant(f"t{i}", p)
    mixed = served.generate(PROMPTS[:2], tenants=["t1", "t0"], num_beams=3, max_new_tokens=4)
    single = served.generate(PROMPTS[:1], tenants=["t1"], num_beams=3, max_new_tokens=4)
    assert mixed[0] == single[0]


def test_bad_tenants_are_refused_without_harm(tmp_path):
    paths = make_tenants(tmp_path, "tiny-llama", Parade, n=1)
    served = MultiTenantModel.from_backbone("tiny-llama")
    served.add_tenant("good", paths[0])
    before = served.generate(PROMPTS[:1], tenants=["good"], **GEN)
    with pytest.raises(KeyError, match="unknown tenants"):
        served.generate(PROMPTS[:2], tenants=["good", "nobody"], **GEN)
    lora = make_tenants(tmp_path / "lora", "tiny-llama", LoRA, n=1)[0]
    with pytest.raises(ValueError, match="mixing method kinds"):
        served.add_tenant("lora", lora)
    other = make_tenants(tmp_path / "gpt2", "tiny-gpt2", Parade, n=1)[0]
    with pytest.raises(ValueError, match="trained on backbone 'tiny-gpt2'"):
        served.add_tenant("gpt2", other)
    wrong = load_adapter(paths[0])
    key = next(iter(wrong.state))
    wrong.state[key] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="shape"):
        served.add_tenant("broken", wrong)
    assert served.tenants == ["good"]
    assert served.generate(PROMPTS[:1], tenants=["good"], **GEN) == before


def test_ia3_scale_cache_follows_parameter_updates_and_swaps():
    """The no-grad cache of (IA)³ vectors never serves stale values."""
    model, _ = tiny("tiny-llama")
    method = IA3()
    method.attach(model)
    ids = torch.randint(3, 250, (2, 6))
    with torch.no_grad():
        first = model(input_ids=ids).logits
        perturb(model)  # in-place update: version counters move
        second = model(input_ids=ids).logits
        assert not torch.equal(first, second)
        plain, _ = tiny("tiny-llama")
        method2 = IA3()
        method2.attach(plain)
        method2.load_adapter_state_dict(plain, method.adapter_state_dict(model))
        with torch.enable_grad():
            assert torch.equal(plain(input_ids=ids).logits, second)
