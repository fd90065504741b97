"""The training loss: next-token cross-entropy on the response tokens only, computing the
vocabulary projection only where a token is scored.

The datamodules set ``labels`` to ``-100`` on the prompt and the padding (paper appendix C:
the loss covers the answer). Hugging Face's own causal-LM loss projects *every* position onto
the vocabulary and then ignores most of them; on SST-2 (74 tokens, 1-2 answer tokens per row)
with SmolLM2 (49,152 x 576 head, a fifth of the model's multiply-adds) that wasted projection
and its backward were about a third of a CPU training step. :func:`response_loss` asks the
model for the logits of the scored positions only (``logits_to_keep`` with a boolean mask,
which every causal LM of transformers 5 that slices through ``slice_logits_to_keep``
understands) and takes the same mean cross-entropy over the same terms as Hugging Face's
``ForCausalLMLoss`` (fp32 upcast, ``ignore_index=-100``); a model whose forward has no
``logits_to_keep`` gets the full logits and the same selection afterwards.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


def scored_positions(labels: torch.Tensor) -> torch.Tensor:
    """``(batch, seq)`` boolean mask of the positions whose next token is scored: position
    ``t`` predicts token ``t + 1``, so it is kept when ``labels[:, t + 1]`` is not ignored."""
    if labels.dim() != 2:
        raise ValueError(f"labels must be (batch, seq), got shape {tuple(labels.shape)}")
    return F.pad(labels[:, 1:] != IGNORE_INDEX, (0, 1), value=False)


def accepts_logits_to_keep(model: nn.Module) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep``."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def response_loss(model: nn.Module, labels: torch.Tensor, **inputs: Any) -> torch.Tensor:
    """Mean next-token cross-entropy of ``model`` over the tokens of ``labels`` that are not
    ``-100``; ``inputs`` are the other forward arguments (``input_ids`` or ``inputs_embeds``,
    ``attention_mask``, a method's extra inputs). Equal to ``model(labels=labels,
    **inputs).loss`` up to float rounding (the tests check it on three architectures)."""
    keep = scored_positions(labels)
    targets = labels[:, 1:][keep[:, :-1]]
    if accepts_logits_to_keep(model):
        logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    else:
        logits = model(**inputs, use_cache=False).logits
    if logits.dim() == 3:  # the model ignored the mask (or has no such argument)
        logits = logits[keep]
    if logits.shape[0] != targets.shape[0]:
        raise RuntimeError(
            f"{type(model).__name__} returned logits for {logits.shape[0]} positions where "
            f"{targets.shape[0]} are scored; its logits_to_keep does not take a boolean mask")
    return F.cross_entropy(logits.float(), targets.to(logits.device), ignore_index=IGNORE_INDEX)
