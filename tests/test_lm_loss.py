"""The training loss (methods.lm_loss.response_loss): Hugging Face's causal-LM loss, value and
gradients, with the vocabulary projection run on the scored positions only."""

from __future__ import annotations

import pytest
import torch
from conftest import ARCHS, method_zoo, perturb, tiny, toy_batch
from torch import nn

from methods import FromPeft
from methods.lm_loss import response_loss, scored_positions
from parade_lightning import PeftLitModule


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Left padding on row 0, answers of different lengths and places, one unscored row end."""
    ids, attention, prompt = toy_batch(seed, batch=3, length=12)
    labels = ids.masked_fill(prompt | (attention == 0), -100)
    labels[2, -1] = -100  # row 2's last token is padding-like: not scored
    return {"input_ids": ids, "attention_mask": attention, "prompt_mask": prompt,
            "labels": labels}


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for _, p in model.peft_method.named_adapter_parameters(model)]


def test_scored_positions_shift_by_one() -> None:
    labels = torch.tensor([[-100, -100, 7, 8], [-100, 5, -100, -100]])
    assert scored_positions(labels).tolist() == [[False, True, True, False],
                                                 [True, False, False, False]]
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        scored_positions(labels[0])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ["parade", "parade1", "parade2", "parade3", "parade4", "lora",
                                  "ia3_paper"])
def test_equals_hugging_face_loss_and_gradients(arch: str, name: str) -> None:
    torch.manual_seed(0)
    model, _ = tiny(arch)
    method = method_zoo(arch)[name]
    method.attach(model)
    perturb(model)
    model.eval()  # no dropout: the two passes see the same network
    batch = _batch()
    extra = method.forward_inputs(batch)
    reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      labels=batch["labels"], use_cache=False, **extra).loss
    reference.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    loss = method.training_loss(model, batch)
    loss.backward()
    assert torch.allclose(loss, reference, atol=1e-6, rtol=0)
    for got, want in zip(_grads(model), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_projects_only_the_scored_positions() -> None:
    """The point of it: the LM head sees one row per scored token, not batch x length."""
    module = PeftLitModule("tiny-llama", num_beams=1)
    batch = _batch()
    rows: list[int] = []
    head = module.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, args, _o: rows.append(args[0].shape[0]))
    try:
        module._loss(batch, "val")
    finally:
        handle.remove()
    assert rows == [int((batch["labels"][:, 1:] != -100).sum())]


class _NoKeepArgument(nn.Module):
    """A causal LM whose forward has no ``logits_to_keep`` (full logits only)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask=None, use_cache=None, labels=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                          use_cache=use_cache)


def test_model_without_logits_to_keep_gets_the_same_loss() -> None:
    torch.manual_seed(0)
    model, _ = tiny("tiny-gpt2")
    wrapped = _NoKeepArgument(model).eval()
    batch = _batch(1)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    reference = wrapped(**inputs, labels=batch["labels"]).loss
    assert torch.allclose(response_loss(wrapped, batch["labels"], **inputs), reference,
                          atol=1e-6, rtol=0)


class _WrongRows(nn.Module):
    def forward(self, input_ids, attention_mask=None, use_cache=None, logits_to_keep=0):
        return type("Out", (), {"logits": torch.zeros(1, 7)})()


def test_a_model_that_misreads_the_mask_is_named() -> None:
    batch = _batch()
    with pytest.raises(RuntimeError, match=r"_WrongRows returned logits for 1 positions"):
        response_loss(_WrongRows(), batch["labels"], input_ids=batch["input_ids"])


@pytest.mark.parametrize("peft", [("PROMPT_TUNING", {"num_virtual_tokens": 3}),
                                  ("ADALORA", {"init_r": 2, "target_r": 1, "total_step": 10})],
                         ids=["prompt_tuning", "adalora"])
def test_from_peft_keeps_the_wrappers_own_loss(peft) -> None:
    """PEFT's forward may add a term (AdaLoRA's regulariser) or lengthen the sequence (prompt
    tuning): FromPeft trains on the model's own loss, exactly."""
    torch.manual_seed(0)
    model, _ = tiny("tiny-llama")
    method = FromPeft(*peft)
    method.attach(model)
    perturb(model)
    batch = _batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    torch.manual_seed(1)
    reference = model(**inputs, labels=batch["labels"], use_cache=False).loss
    torch.manual_seed(1)
    assert torch.equal(method.training_loss(model, batch), reference)
    if peft[0] == "ADALORA":  # the regulariser is in it
        torch.manual_seed(1)
        assert not torch.allclose(response_loss(model, batch["labels"], **inputs), reference)
