"""methods.FromPeft: PEFT's AdaLoRA, prompt tuning and prefix tuning trained as plugins
(loss falls, adapter-only checkpoints round-trip, generate, budget counts), AdaLoRA's rank
allocator wired through the optimiser-step hook, the shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModelForCausalLM
from test_cli import cli_args, scalars
from test_lit_module import ToyData, fit_toy, trainer

from methods import FromPeft
from methods.adapter_files import load_adapter, save_adapter
from methods.backbones import load_backbone
from methods.registry import method_from_config
from parade_lightning import PeftLitModule, parameter_budget
from parade_lightning.cli import build_cli
from parade_lightning.sweep.budget_match import count_parameters, solve

ROOT = Path(__file__).resolve().parents[1]


def shipped(name: str) -> dict:
    text = (ROOT / "configs/methods" / f"{name}.yaml").read_text()
    return yaml.safe_load(text)["model"]["method"]


SMALL = {  # the shipped configs, sized for the tiny model
    "adalora": FromPeft("ADALORA", {"init_r": 4, "target_r": 2, "tinit": 0, "tfinal": 0.25,
                                    "deltaT": 1}),
    "prompt_tuning": FromPeft("PROMPT_TUNING", {"num_virtual_tokens": 4}),
    "prefix_tuning": FromPeft("PREFIX_TUNING", {"num_virtual_tokens": 4}),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_fit_lowers_loss_and_adapter_round_trips(tmp_path, name):
    torch.manual_seed(0)
    method = method_from_config(SMALL[name].to_config())  # a fresh one, as a config builds it
    module = PeftLitModule("tiny-llama", method=method, lr=3e-2, warmup_ratio=0.0, num_beams=1)
    t, data, batch, before, after = fit_toy(tmp_path, module)
    with torch.no_grad():
        logits = module(batch).logits
    assert after < before
    path = tmp_path / "adapter.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    names = [k for k, _ in module.method.named_adapter_parameters(module.model)]
    assert set(ckpt["state_dict"]) == {"model." + k for k in names}  # adapter only
    count = sum(v.numel() for v in ckpt["state_dict"].values())
    assert parameter_budget(module.model).trainable == count
    assert count_parameters("tiny-llama", "methods.FromPeft", method.to_config()["init_args"]) \
        == count  # the same count on the meta device (budget matching)
    restored = PeftLitModule.load_from_checkpoint(path).eval()
    with torch.no_grad():
        assert torch.equal(restored(batch).logits, logits)
    save_adapter(module.model, tmp_path / "folder", backbone="tiny-llama")
    file = load_adapter(tmp_path / "folder")
    fresh, _ = load_backbone("tiny-llama")
    method_from_config(file.method).attach(fresh).peft_method.load_adapter_state_dict(
        fresh, file.state)
    with torch.no_grad():
        again = fresh.eval()(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"]).logits
        assert torch.allclose(again, logits[:, -again.shape[1]:], atol=1e-5)
    prompts = [row["prompt_ids"] for row in data.rows[:3]]
    kwargs = {"num_beams": 3, "max_new_tokens": 3}
    assert module.generate(prompts, **kwargs) == restored.generate(prompts, **kwargs)


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gpt2", "tiny-gpt-neox"])
@pytest.mark.parametrize("name", ["prompt_tuning", "prefix_tuning"])
def test_virtual_tokens_in_forward_and_generate(name, arch):
    """The held backbone's forward is PEFT's (same loss as PEFT's own wrapper); generate sees
    the soft tokens / prefix at every step (its logits are the teacher-forced forward's), and
    a padded batch generates what each prompt does alone, greedy and with beams."""
    torch.manual_seed(0)
    module = PeftLitModule(arch, method=method_from_config(SMALL[name].to_config()),
                           max_new_tokens=4).eval()
    with torch.no_grad():
        for _, p in module.method.named_adapter_parameters(module.model):
            p.normal_(0, 3.0)  # a prompt that changes the answers
    backbone, tokenizer = load_backbone(arch)
    reference = PeftModelForCausalLM(backbone, module.method.build_peft_config(backbone)).eval()
    reference.prompt_encoder.load_state_dict(module.model.peft_prompt.encoder.state_dict())
    ids = torch.tensor([[8, 9, 10, 11, 12]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    with torch.no_grad():
        assert torch.allclose(module(batch).loss, reference(**batch).loss, atol=1e-6)
        out = module.model.generate(**{k: batch[k] for k in ("input_ids", "attention_mask")},
                                    max_new_tokens=4, do_sample=False, output_logits=True,
                                    return_dict_in_generate=True, pad_token_id=0)
        seq = out.sequences
        forced = module({"input_ids": seq, "attention_mask": torch.ones_like(seq)}).logits
    for step, logits in enumerate(out.logits):
        assert torch.allclose(logits[0], forced[0, forced.shape[1] - seq.shape[1] + 4 + step],
                              atol=1e-5)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    for beams in (1, 3):
        batched = module.generate(prompts, num_beams=beams)
        assert batched == [module.generate([p], num_beams=beams)[0] for p in prompts]
    with torch.no_grad():  # the soft prompt / prefix is used
        bare = load_backbone(arch)[0](input_ids=ids, attention_mask=torch.ones_like(ids))
    assert not torch.allclose(out.logits[0][0], bare.logits[0, -1], atol=1e-3)


def test_adalora_allocates_ranks_after_each_optimiser_step(tmp_path):
    torch.manual_seed(0)
    module = PeftLitModule("tiny-llama", method=method_from_config(SMALL["adalora"].to_config()),
                           lr=3e-2, warmup_ratio=0.0)
    steps = []
    tuner = module.method._wrapper.base_model
    original = tuner.update_and_allocate
    tuner.update_and_allocate = lambda step: (steps.append(step), original(step))
    t = trainer(tmp_path, max_steps=12)
    t.fit(module, datamodule=ToyData())
    assert steps == list(range(12))
    config = tuner.peft_config["default"]
    assert (config.total_step, config.tinit, config.tfinal) == (12, 0, 3)  # from the trainer
    kept = sum(sum(mask) for mask in config.rank_pattern.values())
    assert kept == 2 * 14  # target_r x (2 layers x 7 roles): half of init_r 4 pruned
    nonzero = sum(int((p != 0).sum()) for n, p in module.model.named_parameters()
                  if "lora_E" in n)
    assert nonzero == kept
    # resume: the allocator's state travels in the checkpoint (weights_only loadable)
    path = tmp_path / "last.ckpt"
    t.save_checkpoint(path)
    restored = PeftLitModule.load_from_checkpoint(path)
    assert restored.method._wrapper.base_model.peft_config["default"].rank_pattern == \
        config.rank_pattern
    later = trainer(tmp_path, max_steps=14)
    later.fit(restored, datamodule=ToyData(), ckpt_path=path)
    assert later.global_step == 14


def test_adalora_schedule_that_leaves_no_allocation_is_a_clear_error(tmp_path):
    method = FromPeft("ADALORA", {"init_r": 2, "target_r": 1, "tinit": 0.6, "tfinal": 0.5})
    module = PeftLitModule("tiny-llama", method=method)
    with pytest.raises(ValueError, match="tinit=2 and tfinal=2 leave no rank-allocation"):
        trainer(tmp_path, max_steps=4).fit(module, datamodule=ToyData())


def test_roles_translate_and_bad_configs_are_clear_errors():
    model, _ = load_backbone("tiny-llama")
    FromPeft("ADALORA", {"init_r": 2, "target_r": 1, "target_modules": "qv"}).attach(model)
    budget = parameter_budget(model)
    assert set(budget.by_role) == {"q", "v"} and sum(budget.by_layer.values()) == \
        budget.trainable
    with pytest.raises(ValueError, match="role letters"):
        FromPeft("LORA", {"target_modules": ["q_proj"]}).attach(load_backbone("tiny-llama")[0])
    with pytest.raises(ValueError, match="share one module"):
        FromPeft("LORA", {"target_modules": ["q"]}).attach(load_backbone("tiny-gpt2")[0])
    with pytest.raises(ValueError, match="unknown peft_type"):
        FromPeft("NOPE")
    with pytest.raises(ValueError, match="MULTITASK_PROMPT_TUNING.*cannot work.*task_ids"):
        FromPeft("MULTITASK_PROMPT_TUNING", {"num_tasks": 2})
    with pytest.raises(ValueError, match="invalid config"):
        FromPeft("LORA", {"no_such_field": 1}).attach(load_backbone("tiny-llama")[0])


def test_shipped_configs_and_budget_matching():
    ada = shipped("adalora")
    assert ada["init_args"]["peft_config"]["init_r"] == 8  # appendix E
    assert ada["init_args"]["peft_config"]["target_r"] == 4  # half of the budget pruned
    for name in ("adalora", "prompt_tuning", "prefix_tuning"):
        assert count_parameters("tiny-llama", ada["class_path"], shipped(name)["init_args"]) > 0
    # AdaLoRA on LLaMA-2 7B at init_r 8: twice LoRA r=4's 9,994,240, plus one E per rank
    assert count_parameters("llama2-7b", "methods.FromPeft", ada["init_args"]) == \
        2 * 9_994_240 + 8 * 32 * 7
    match = solve("llama2-7b", "methods.FromPeft", ada["init_args"], 9_994_240 + 4 * 32 * 7)
    assert (match.knob, match.value) == ("peft_config.init_r", 4)
    assert match.init_args["peft_config"]["target_r"] == 2  # target_r / init_r kept
    prefix = solve("tiny-llama", "methods.FromPeft", shipped("prefix_tuning")["init_args"], 1024)
    assert prefix.count == 1024 and prefix.knob == "peft_config.num_virtual_tokens"


@pytest.mark.parametrize("name", ["adalora", "prefix_tuning"])
def test_cli_fit_evaluates_tests_and_resumes_with_a_shipped_config(tmp_path, name):
    """`parade fit` with a shipped FromPeft config: dev evaluation, test generation (beam 3,
    configs/base.yaml) and metrics, budget report; the checkpoint resumes."""
    args = cli_args(tmp_path, "--config", str(ROOT / f"configs/methods/{name}.yaml"),
                    "--trainer.max_steps", "4", "--test_after_fit", "true",
                    "--model.max_new_tokens", "2")
    cli = build_cli(["fit", *args])
    run_dir = Path(cli.trainer.log_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and metrics["num_beams"] == 3
    budget = json.loads((run_dir / "budget.json").read_text())
    assert budget["trainable"] == metrics["trainable_parameters"] == \
        cli.model.method.num_trainable_parameters(cli.model.model)
    assert "val/loss" in scalars(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    again = build_cli(["fit", *args, "--trainer.max_steps", "6", "--ckpt_path", str(last)])
    assert again.trainer.global_step == 6


def test_optimizer_step_hook_counts_optimiser_steps_under_accumulation(tmp_path):
    method = FromPeft("ADALORA", {"init_r": 2, "target_r": 1, "deltaT": 1})
    module = PeftLitModule("tiny-llama", method=method, lr=1e-2)
    calls = []
    method.on_optimizer_step = lambda model, step, total: calls.append((step, total))
    trainer(tmp_path, max_steps=3, accumulate_grad_batches=2).fit(module, datamodule=ToyData())
    assert calls == [(0, 3), (1, 3), (2, 3)]
    assert method.peft_model.base_model.peft_config["default"].total_step == 3
