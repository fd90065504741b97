"""Bad tenants and adapter files: refused with a clear error, the server left as it was.

(Part of the bad-input suite; docs/reliability.md lists every case and its test.)
"""

from __future__ import annotations

import json

import pytest
import torch
from test_multitenant import GEN, PROMPTS, make_tenants

from methods import Parade
from methods.adapter_files import load_adapter
from parade_lightning.multitenant import MultiTenantModel


@pytest.fixture()
def tenant(tmp_path):
    return make_tenants(tmp_path, "tiny-llama", Parade, n=1)[0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(tenant, bad):
    served = MultiTenantModel.from_backbone("tiny-llama")
    served.add_tenant("good", tenant)
    poisoned = load_adapter(tenant)
    key = sorted(poisoned.state)[0]
    poisoned.state[key] = poisoned.state[key].clone()
    poisoned.state[key].view(-1)[0] = bad
    with pytest.raises(ValueError, match=rf"tenant 'evil': adapter .* has non-finite \(NaN or "
                                         rf"inf\) weights in 1 tensors \(first: \['{key}'\]\)"):
        served.add_tenant("evil", poisoned)
    assert served.tenants == ["good"]


def test_a_duplicate_tenant_name_needs_replace(tenant, tmp_path):
    served = MultiTenantModel.from_backbone("tiny-llama")
    served.add_tenant("acme", tenant)
    before = served.generate(PROMPTS[:1], tenants=["acme"], **GEN)
    other = make_tenants(tmp_path / "other", "tiny-llama", Parade, n=2)[1]
    with pytest.raises(ValueError, match="tenant 'acme' is already registered; pass "
                                         "replace=True to swap its adapter"):
        served.add_tenant("acme", other)
    assert served.generate(PROMPTS[:1], tenants=["acme"], **GEN) == before
    served.add_tenant("acme", other, replace=True)
    assert served.tenants == ["acme"]
    assert served.generate(PROMPTS[:1], tenants=["acme"], **GEN) != before


def test_a_rejected_first_tenant_leaves_the_server_bare(tenant):
    served = MultiTenantModel.from_backbone("tiny-llama")
    wrong = load_adapter(tenant)
    key = sorted(wrong.state)[0]
    wrong.state[key] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=rf"adapter weights do not fit .*{key}"):
        served.add_tenant("first", wrong)
    assert served.tenants == [] and served.method is None
    assert getattr(served.model, "peft_method", None) is None
    assert not any("generator" in name for name, _ in served.model.named_modules())
    served.add_tenant("first", tenant)  # the server still accepts a good first tenant
    assert any("generator" in name for name, _ in served.model.named_modules())
    assert served.generate(PROMPTS[:1], tenants=["first"], **GEN)


def test_an_adapter_folder_with_broken_config_json(tenant):
    (tenant / "adapter_config.json").write_text('{"format": "parade-lightning-adapter",')
    with pytest.raises(ValueError, match=rf"{tenant / 'adapter_config.json'}: not valid JSON"):
        load_adapter(tenant)


def test_an_adapter_folder_with_truncated_weights(tenant):
    weights = tenant / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(ValueError, match=rf"not an adapter weights file: {weights} "
                                         r"\(truncated\?\)"):
        load_adapter(tenant)


def test_an_adapter_folder_without_a_method(tenant):
    config = json.loads((tenant / "adapter_config.json").read_text())
    del config["method"]
    (tenant / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"adapter_config.json: no 'method' entry"):
        load_adapter(tenant)
