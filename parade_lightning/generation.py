"""Batched generation over a (possibly adapted) backbone.

:func:`generate` pads prompts on the left, runs Hugging Face ``model.generate`` batch by batch
and decodes only the new tokens. PARADE needs nothing special here: its conditioner treats the
first forward (no KV cache yet) as the prefill, makes the vectors from the attended prompt
tokens, and reuses them at every decode step (see :mod:`methods.parade`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm


def _to_ids(tokenizer, prompts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
    if all(isinstance(p, str) for p in prompts):
        return tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    if all(isinstance(p, (list, tuple)) for p in prompts):
        return [list(p) for p in prompts]
    raise TypeError("prompts must be all strings or all lists of token ids")


def left_pad(ids: list[list[int]], pad_id: int, device: torch.device | str = "cpu"):
    """Stack token lists into ``(input_ids, attention_mask)`` padded on the left."""
    if any(len(x) == 0 for x in ids):
        raise ValueError("cannot generate from an empty prompt")
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, width - len(x):] = torch.tensor(x, dtype=torch.long)
        mask[row, width - len(x):] = 1
    return input_ids.to(device), mask.to(device)


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    batch_size: int = 8,
    progress: bool | None = None,
    **generate_kwargs,
) -> list[str]:
    """Generate a continuation for each prompt.

    Args:
        model: a causal LM, with or without a method attached.
        tokenizer: its tokenizer (needs a pad token).
        prompts: already-templated prompt strings (tokenised without adding special tokens)
            or lists of token ids.
        batch_size: prompts per ``model.generate`` call.
        progress: show a progress bar (default: when there is more than one batch).
        **generate_kwargs: Hugging Face generation options (``max_new_tokens``,
            ``min_new_tokens``, ``num_beams``, ``do_sample``, ``num_return_sequences``, …).

    Returns:
        The decoded continuations (special tokens removed), ``num_return_sequences`` per
        prompt, consecutively.
    """
    ids = _to_ids(tokenizer, prompts)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    generate_kwargs.setdefault("pad_token_id", pad_id)
    generate_kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
    if not generate_kwargs.get("do_sample"):
        # greedy/beam: say so explicitly so a sampling generation_config does not leak in
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("temperature", None)
        generate_kwargs.setdefault("top_p", None)
        generate_kwargs.setdefault("top_k", None)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    starts = range(0, len(ids), batch_size)
    show = progress if progress is not None else len(starts) > 1
    texts: list[str] = []
    try:
        for start in tqdm(starts, desc="generate", disable=not show):
            input_ids, mask = left_pad(ids[start : start + batch_size], pad_id, device)
            out = model.generate(input_ids=input_ids, attention_mask=mask, **generate_kwargs)
            new_tokens = out[:, input_ids.shape[1]:]  # (B * num_return_sequences, new)
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            texts += [t.strip() for t in decoded]
    finally:
        model.train(was_training)
    return texts
