"""PeftLitModule: loss on responses, the paper's optimiser, adapter-only checkpoints, resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.collate import Collator
from methods import IA3, LoRA, Parade
from methods.backbones import load_tokenizer
from parade_lightning import PeftLitModule, lit_module


def make_batch_rows(tokenizer, n: int = 8) -> list[dict]:
    """Examples in the datamodules' form (prompt, response + EOS, targets, index)."""
    rows = []
    for i in range(n):
        prompt = tokenizer(f"Question {i}: is {i} even?", add_special_tokens=False)["input_ids"]
        answer = "yes" if i % 2 == 0 else "no"
        response = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
        rows.append({"prompt_ids": prompt, "response_ids": response + [tokenizer.eos_token_id],
                     "targets": {"text": answer}, "index": i})
    return rows


class ToyData(L.LightningDataModule):
    max_new_tokens = 3

    def __init__(self, backbone: str = "tiny-llama", n: int = 8) -> None:
        super().__init__()
        self.tok = load_tokenizer(backbone)
        self.rows = make_batch_rows(self.tok, n)

    def _loader(self, shuffle: bool = False) -> DataLoader:
        return DataLoader(self.rows, batch_size=4, shuffle=shuffle,
                          collate_fn=Collator(self.tok.pad_token_id))

    def train_dataloader(self):
        return self._loader(shuffle=True)

    def val_dataloader(self):
        return self._loader()

    def test_dataloader(self):
        return self._loader()

    def predict_dataloader(self):
        return self._loader()


def trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(default_root_dir=tmp_path, max_steps=4, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, log_every_n_steps=1, accelerator="cpu")
    return L.Trainer(**{**defaults, **kwargs})


def fit_toy(tmp_path, module: PeftLitModule, max_steps: int = 12):
    """Fit ``module`` on :class:`ToyData`; ``(trainer, data, batch, loss before, loss after)``
    with the losses on the whole toy set."""
    data = ToyData()
    batch = Collator(data.tok.pad_token_id)(data.rows)
    with torch.no_grad():
        before = module(batch).loss.item()
    t = trainer(tmp_path, max_steps=max_steps)
    t.fit(module, datamodule=data)
    module.eval()
    with torch.no_grad():
        after = module(batch).loss.item()
    return t, data, batch, before, after


@pytest.mark.parametrize("method", [Parade(), LoRA(r=2), IA3()], ids=["parade", "lora", "ia3"])
def test_fit_lowers_loss_and_checkpoint_holds_adapter_only(tmp_path, method):
    torch.manual_seed(0)
    module = PeftLitModule("tiny-llama", method=method, lr=3e-2, warmup_ratio=0.0)
    t, data, batch, before, after = fit_toy(tmp_path, module)
    assert after < before
    path = tmp_path / "adapter.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    adapter_keys = {"model." + k for k, _ in module.method.named_adapter_parameters(module.model)}
    assert set(ckpt["state_dict"]) == adapter_keys
    assert ckpt["hyper_parameters"]["method"]["class_path"].startswith("methods.")
    restored = PeftLitModule.load_from_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(restored(batch).logits, module(batch).logits)


def test_scheduler_warms_up_then_decays(tmp_path):
    module = PeftLitModule("tiny-llama", method=IA3(), lr=1e-3, warmup_ratio=0.25)
    t = trainer(tmp_path, max_steps=8)
    lrs = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    t.callbacks.append(Spy())
    t.fit(module, datamodule=ToyData())
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(1e-3) and lrs[-1] < max(lrs)
    assert lrs.index(max(lrs)) == 2  # 25 % of 8 steps


def test_resume_from_checkpoint_restores_optimizer_and_steps(tmp_path):
    torch.manual_seed(0)
    half = PeftLitModule("tiny-llama", method=LoRA(r=2), lr=1e-2)
    t = trainer(tmp_path / "b", max_steps=6)
    t.fit_loop.epoch_loop.max_steps = 3  # stop in the middle, as if killed
    t.fit(half, datamodule=ToyData())
    t.save_checkpoint(tmp_path / "mid.ckpt")
    ckpt = torch.load(tmp_path / "mid.ckpt", weights_only=True)
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"] and ckpt["global_step"] == 3

    torch.manual_seed(0)
    resumed = PeftLitModule("tiny-llama", method=LoRA(r=2), lr=1e-2)
    t2 = trainer(tmp_path / "c", max_steps=6)
    t2.fit(resumed, datamodule=ToyData(), ckpt_path=tmp_path / "mid.ckpt")
    assert t2.global_step == 6
    adam = t2.optimizers[0].state
    assert adam and all(int(state["step"]) == 6 for state in adam.values())  # 3 restored + 3


def test_bf16_mixed_on_cpu_keeps_adapters_fp32(tmp_path):
    module = PeftLitModule("tiny-llama", method=Parade(), backbone_dtype="bfloat16")
    trainer(tmp_path, max_steps=2, precision="bf16-mixed").fit(module, datamodule=ToyData())
    params = dict(module.method.named_adapter_parameters(module.model))
    assert all(p.dtype == torch.float32 for p in params.values())
    assert next(module.model.parameters()).dtype == torch.bfloat16


def test_predict_generates_with_beams(tmp_path, monkeypatch):
    module = PeftLitModule("tiny-llama", method=Parade(), num_beams=2)
    seen = []
    real = lit_module.generate
    monkeypatch.setattr(lit_module, "generate", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    out = trainer(tmp_path).predict(module, datamodule=ToyData())
    assert seen and all(kw["num_beams"] == 2 and kw["max_new_tokens"] == 3 for kw in seen)
    rows = [r for batch in out for r in batch]
    assert len(rows) == 8 and all(isinstance(r["prediction"], str) for r in rows)


def test_bad_inputs_are_clear():
    with pytest.raises(ValueError, match="unknown method"):
        PeftLitModule("tiny-llama", method={"class_path": "NoSuchMethod"})
    with pytest.raises(ValueError, match="does not exist in gpt2"):
        PeftLitModule("tiny-gpt2", method=LoRA(targets=("g",)))
    with pytest.raises(ValueError, match="scheduler"):
        PeftLitModule("tiny-llama", scheduler="cosine")


def test_eager_attention_trains_the_same_model(tmp_path):
    """``attn_implementation`` changes the kernel, not the arithmetic: the same seed gives
    the same losses before and after a short fit (up to rounding), and checkpoints keep it."""
    results = {}
    for kernel in ("sdpa", "eager"):
        torch.manual_seed(0)
        module = PeftLitModule("tiny-llama", method=Parade(), lr=1e-2, attn_implementation=kernel)
        assert module.model.config._attn_implementation == kernel
        assert module.hparams["attn_implementation"] == kernel
        L.seed_everything(0)
        _, _, _, before, after = fit_toy(tmp_path / kernel, module, max_steps=4)
        results[kernel] = (before, after)
    assert results["eager"][1] < results["eager"][0]
    torch.testing.assert_close(results["eager"], results["sdpa"], rtol=1e-4, atol=1e-5)
