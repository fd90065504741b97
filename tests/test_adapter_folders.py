"""Adapters that travel: save_pretrained / load_pretrained folders (config with backbone hash,
safetensors, model card), backbone checks that name what differs, version-1 folders, `parade
export` (our folder and PEFT's), and the multi-tenant server loading these folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import perturb, run, tiny, toy_batch
from peft import PeftModel
from safetensors.torch import save_file
from test_cli import cli_args
from transformers import AutoModelForCausalLM

from methods import IA3, FromPeft, LoRA, Parade, load_pretrained, save_pretrained
from methods.adapter_files import LEGACY_WEIGHTS_FILE, load_adapter
from parade_lightning import PeftLitModule
from parade_lightning.cli import build_cli, main
from parade_lightning.multitenant import MultiTenantModel

GEN = dict(max_new_tokens=4, min_new_tokens=4)


def logits(model, seed: int = 0) -> torch.Tensor:
    ids, mask, prompt = toy_batch(seed)
    with torch.no_grad():
        if isinstance(model, PeftModel):
            return model.eval()(input_ids=ids, attention_mask=mask).logits
        return run(model.eval(), ids, mask, prompt).logits


def adapted(method, arch: str = "tiny-llama"):
    model, _ = tiny(arch)
    method.attach(model)
    perturb(model, scale=0.5, seed=3)
    return model


def test_save_and_load_pretrained_round_trip_with_card(tmp_path):
    model = adapted(Parade())
    folder = Parade.save_pretrained(model, tmp_path / "rte", backbone="tiny-llama",
                                    card={"task": "rte", "metrics": {"test accuracy": 0.75}})
    assert {p.name for p in folder.iterdir()} == {
        "adapter_config.json", "adapter_model.safetensors", "README.md"}
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["method"]["class_path"] == "methods.parade.Parade"
    assert config["backbone"] == "tiny-llama" and len(config["backbone_config_hash"]) == 64
    assert config["library"]["parade-lightning"] and config["library"]["torch"]
    assert config["budget"]["trainable"] == model.peft_method.num_trainable_parameters(model)
    card = (folder / "README.md").read_text()
    assert "# Parade adapter for rte" in card and "test accuracy | 0.75" in card
    assert f"{config['budget']['trainable']:,}" in card and "num_capsules" in card
    loaded = load_pretrained(folder)  # the recorded backbone, loaded here
    assert torch.equal(logits(loaded), logits(model))
    onto, _ = tiny("tiny-llama")
    assert torch.equal(logits(load_pretrained(folder, onto)), logits(model))


def test_another_backbone_is_refused_with_the_fields_that_differ(tmp_path):
    folder = save_pretrained(adapted(LoRA(r=2)), tmp_path / "a", backbone="tiny-llama")
    base, _ = tiny("tiny-llama")
    config = base.config.to_dict() | {"intermediate_size": base.config.intermediate_size * 2}
    other = AutoModelForCausalLM.from_config(type(base.config).from_dict(config))
    with pytest.raises(ValueError, match=r"intermediate_size: adapter 64, model 128"):
        load_pretrained(folder, other)
    gpt2, _ = tiny("tiny-gpt2")
    with pytest.raises(ValueError, match=r"model_type: adapter 'llama', model 'gpt2'"):
        load_pretrained(folder, gpt2)
    bf16, _ = tiny("tiny-llama")
    load_pretrained(folder, bf16.to(torch.bfloat16))  # dtype is not architecture


def test_version_1_folders_still_load(tmp_path):
    model = adapted(IA3())
    state = {k: v.contiguous() for k, v in model.peft_method.adapter_state_dict(model).items()}
    old = tmp_path / "v1"
    old.mkdir()
    save_file(state, str(old / LEGACY_WEIGHTS_FILE))
    (old / "adapter_config.json").write_text(json.dumps({
        "format": "parade-lightning-adapter", "version": 1, "backbone": "tiny-llama",
        "model_type": "llama", "method": model.peft_method.to_config()}))
    assert load_adapter(old).backbone_config is None
    assert torch.equal(logits(load_pretrained(old)), logits(model))
    with pytest.raises(ValueError, match="trained on backbone 'tiny-llama', this model is"):
        load_pretrained(old, tiny("tiny-gpt2")[0], backbone="tiny-gpt2")


def test_parade_export_writes_our_folder_and_peft_folders(tmp_path):
    args = cli_args(tmp_path, "--config", "configs/methods/lora.yaml", "--trainer.max_steps",
                    "4", "--test_after_fit", "true", "--model.max_new_tokens", "2")
    cli = build_cli(["fit", *args])
    run_dir = Path(cli.trainer.log_dir)
    best = json.loads((run_dir / "metrics.json").read_text())["ckpt_path"]
    main(["export", "--ckpt_path", best, "--out", str(tmp_path / "ours")])
    card = (tmp_path / "ours" / "README.md").read_text()
    assert "# LoRA adapter for rte" in card and "test accuracy" in card and "best val/loss" in card
    assert "datamodules.RTE" in card
    restored = PeftLitModule.load_from_checkpoint(best).model
    assert torch.equal(logits(load_pretrained(tmp_path / "ours")), logits(restored))
    main(["export", "--ckpt_path", best, "--out", str(tmp_path / "peft"), "--format", "peft"])
    theirs = PeftModel.from_pretrained(tiny("tiny-llama")[0], tmp_path / "peft")
    assert torch.allclose(logits(theirs), logits(restored), atol=1e-5)


def test_from_peft_exports_a_peft_folder(tmp_path):
    from methods import export_peft

    model = adapted(FromPeft("ADALORA", {"init_r": 2, "target_r": 1}))
    export_peft(model, tmp_path / "ada", base_model_name_or_path="tiny-llama")
    theirs = PeftModel.from_pretrained(tiny("tiny-llama")[0], tmp_path / "ada")
    assert torch.allclose(logits(theirs), logits(model), atol=1e-5)


def test_multitenant_serves_save_pretrained_folders(tmp_path):
    folders = [save_pretrained(adapted(Parade(), "tiny-llama"), tmp_path / f"t{i}",
                               backbone="tiny-llama") for i in range(2)]
    served = MultiTenantModel.from_backbone("tiny-llama")
    for i, folder in enumerate(folders):
        served.add_tenant(f"t{i}", folder)
    text = served.generate(["Hello there"], tenants=["t1"], **GEN)
    alone, tokenizer = tiny("tiny-llama")
    load_pretrained(folders[1], alone)
    from parade_lightning.generation import generate
    assert generate(alone, tokenizer, ["Hello there"], **GEN) == text
    ada = save_pretrained(adapted(FromPeft("ADALORA", {"init_r": 2, "target_r": 1})),
                          tmp_path / "ada", backbone="tiny-llama")
    other = MultiTenantModel.from_backbone("tiny-llama")
    with pytest.raises(ValueError, match="cannot serve mixed batches"):
        other.add_tenant("ada", ada)
    base, _ = tiny("tiny-llama")
    config = base.config.to_dict() | {"num_hidden_layers": 3}
    bigger = MultiTenantModel(AutoModelForCausalLM.from_config(
        type(base.config).from_dict(config)), tokenizer)
    with pytest.raises(ValueError, match="tenant 't0'.*num_hidden_layers: adapter 2, model 3"):
        bigger.add_tenant("t0", folders[0])
