"""Pooler attention maps: which prompt tokens each capsule of PARADE's pooler reads.

The attentional capsule pooler (paper section 3.3, eqs. 9-10) aggregates the prompt with
weights ``n_{j,k}``: for output capsule ``k``, a softmax over the prompt tokens ``j``. The
poolers keep the weights of their last forward (``last_attention``, ``(B, T, K)``, exactly 0 off
the prompt); this module runs one forward on given prompts and collects them per decoder
layer. Drawing is :mod:`parade_lightning.attention_plot`; the command is ``parade explain``
(:mod:`parade_lightning.explain`); :class:`callbacks.PoolerAttentionMaps` logs them at dev
evaluation.

What the weights are per pooler (``Parade(pooler=…)``):

* ``capsule`` (PARADE): the refined ``n_{j,k}`` of eq. 10 (the weights that make the output);
  each capsule's column sums to one over the prompt tokens.
* ``routing`` (PARADE-2): the coupling coefficients of the single routing iteration, a
  softmax over *capsules* that starts uniform; every prompt token carries ``1/K`` for each
  capsule, so a map shows no preference by construction (see docs/paper_readings.md).
* ``last`` (PARADE-1) has no weights (it takes the last prompt token): an error says so.

Note the paper's figures 3-6 show the *backbone's* self-attention heads with PARADE and
(IA)³, not the pooler's weights (appendix I); these maps show what PARADE itself attends to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from methods.parade import Parade, ParadeLayer
from parade_lightning.generation import left_pad


@dataclass
class PoolerMaps:
    """Pooler weights of a batch of prompts.

    Attributes:
        tokens: per row, its prompt tokens as text (unpadded, in order).
        layers: the decoder layers the weights come from (0-based).
        weights: ``(B, L, T, K)`` float32, the weights of layer ``layers[l]``; 0 on padding.
        mask: ``(B, T)`` bool, True on prompt tokens (the padding is on the left).
        pooler: the pooler's name (``capsule`` or ``routing``).
    """

    tokens: list[list[str]]
    layers: list[int]
    weights: torch.Tensor
    mask: torch.Tensor
    pooler: str

    def row(self, index: int) -> torch.Tensor:
        """Row ``index``'s weights without its padding: ``(L, T_row, K)``."""
        return self.weights[index][:, self.mask[index]]


def default_layers(num_layers: int, count: int = 4) -> list[int]:
    """``count`` evenly spaced layers from the first: 0, L/4, L/2, 3L/4 for four. On a
    32-layer LLaMA-2 7B these are the paper's 1-th, 9-th, 17-th and 25-th layers (appendix I)."""
    count = min(count, num_layers)
    return [i * num_layers // count for i in range(count)]


def parade_layers(model: nn.Module) -> list[ParadeLayer]:
    """The model's PARADE layers; a clear error when the model carries no PARADE."""
    method = getattr(model, "peft_method", None)
    if not isinstance(method, Parade):
        name = type(method).__name__ if method is not None else "no method"
        raise ValueError(f"pooler attention maps need a PARADE model; this one carries {name}")
    if method.pooler == "last":
        raise ValueError("pooler 'last' (PARADE-1) takes the last prompt token and has no "
                         "attention weights to draw; use the capsule (PARADE) or routing pooler")
    return Parade.layers(model)


def choose_layers(model: nn.Module, layers: Sequence[int] | None) -> list[int]:
    """``layers`` checked against the model (negative counts from the end), else the default."""
    count = len(parade_layers(model))
    if not layers:
        return default_layers(count)
    chosen = []
    for index in layers:
        if not -count <= int(index) < count:
            raise ValueError(f"--layers: layer {index} does not exist; the model has {count} "
                             f"decoder layers (0..{count - 1}, or negative from the end)")
        chosen.append(int(index) % count)
    return chosen


def read_pooler_attention(model: nn.Module, layers: Sequence[int]) -> torch.Tensor:
    """The weights the chosen layers' pools kept from the model's last forward:
    ``(B, L, T, K)`` float32 (CPU)."""
    by_index = {layer.layer: layer for layer in parade_layers(model)}
    found = []
    for index in layers:
        attention = by_index[index].generator.pooler.last_attention
        if attention is None:
            raise RuntimeError(f"layer {index}'s pooler has no weights yet: run a forward first")
        found.append(attention.float().cpu())
    return torch.stack(found, dim=1)


@torch.no_grad()
def pooler_attention_maps(model: nn.Module, tokenizer, prompts: Sequence[Sequence[int]],
                          layers: Sequence[int] | None = None) -> PoolerMaps:
    """One forward over token-id ``prompts`` (every token is pooled, as at prefill) and the
    pooler weights of ``layers`` (default :func:`default_layers`).

    The model is put in eval mode for the forward and back in its former mode afterwards.
    """
    chosen = choose_layers(model, layers)
    device = next(p.device for p in model.parameters())
    input_ids, attention = left_pad([list(p) for p in prompts], tokenizer.pad_token_id, device)
    mask = attention.bool()
    was_training = model.training
    model.eval()
    try:
        model(input_ids=input_ids, attention_mask=attention, prompt_mask=mask, use_cache=False)
    finally:
        model.train(was_training)
    tokens = [tokenizer.convert_ids_to_tokens(list(p)) for p in prompts]
    return PoolerMaps(tokens=[[str(t) for t in row] for row in tokens], layers=chosen,
                      weights=read_pooler_attention(model, chosen), mask=mask.cpu(),
                      pooler=model.peft_method.pooler)
