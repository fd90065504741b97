"""Batched generation over a (possibly adapted) backbone.

:func:`generate` pads prompts on the left, runs Hugging Face ``model.generate`` batch by batch
and decodes only the new tokens. Each batch runs inside the method's
:meth:`~methods.PeftMethod.generating` context: PARADE checks the prompts' mask there, once on
the host, and its layers treat the first forward as the prefill (vectors from the attended
prompt tokens) and reuse those vectors at every decode step (see :mod:`methods.parade`).

``compile=True`` serves the decode steps from a static KV cache through a compiled forward
(``torch.compile``; on a GPU ``mode="reduce-overhead"``, i.e. CUDA graphs), with
``fullgraph=True`` so that a graph break is an error rather than a silent slowdown. The prefill
stays eager (Hugging Face compiles only the decode loop). Limits, all from the compiled graph
being specialised to shapes: the first call per (batch rows × beams, static-cache length)
compiles (seconds to minutes); the cache length is prompt + ``max_new_tokens`` and only grows
between calls (pass ``max_cache_len=`` to fix it up front); more than
``torch._dynamo.config.recompile_limit`` shapes fall back to eager. Greedy and sampling
decode compiled; beam search runs with the static cache but Hugging Face's beam loop is not
compiled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import CompileConfig


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


def compile_options(compile: bool | str | dict, device: torch.device) -> dict:
    """The ``model.generate`` options of ``compile=`` (see the module docstring).

    ``True``: inductor, with CUDA graphs (``mode="reduce-overhead"``) on a GPU; a string: that
    ``torch.compile`` backend (``"aot_eager"`` traces and checks the graph without inductor's
    code generation: what the CPU tests use); a dict: ``transformers.CompileConfig`` fields.
    """
    if isinstance(compile, dict):
        fields = dict(compile)
    elif isinstance(compile, str):
        fields = {"backend": compile, "mode": None}
    elif compile is True:
        fields = {"backend": "inductor",
                  "mode": "reduce-overhead" if device.type == "cuda" else None}
    else:
        raise TypeError(f"compile must be a bool, a backend name or a dict, got {compile!r}")
    fields.setdefault("fullgraph", True)
    fields.setdefault("dynamic", False)
    config = CompileConfig(**fields)
    config._compile_all_devices = True  # transformers compiles only on accelerators otherwise
    return {"cache_implementation": "static", "compile_config": config}


def _rows_per_prompt(model: nn.Module, generate_kwargs: dict) -> int:
    """How many rows Hugging Face's ``generate`` makes of each prompt (beams or samples)."""
    config = getattr(model, "generation_config", None)

    def option(name: str) -> int:
        value = generate_kwargs.get(name, getattr(config, name, None))
        return int(value or 1)

    return max(option("num_beams"), option("num_return_sequences"))


@torch.no_grad()
def generate_batch(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
    compile: bool | str | dict = False, **generate_kwargs,
):
    """One ``model.generate`` call on a padded batch, inside the method's
    :meth:`~methods.PeftMethod.generating` context (where PARADE checks the prompt mask once,
    on the host). Returns what ``model.generate`` returns (ids, or a dict with
    ``return_dict_in_generate=True``)."""
    if compile:
        generate_kwargs.update(compile_options(compile, input_ids.device))
    method = getattr(model, "peft_method", None)
    session = contextlib.nullcontext()
    if method is not None:
        rows = attention_mask.repeat_interleave(_rows_per_prompt(model, generate_kwargs), dim=0)
        session = method.generating(model, rows)
    with session:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask,
                              **generate_kwargs)


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    batch_size: int = 8,
    progress: bool | None = None,
    compile: bool | str | dict = False,
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
        compile: decode from a static cache with a compiled forward (``True``, a
            ``torch.compile`` backend name or ``CompileConfig`` fields; see
            :func:`compile_options` and the module docstring for the limits).
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
            out = generate_batch(model, input_ids, mask, compile=compile, **generate_kwargs)
            new_tokens = out[:, input_ids.shape[1]:]  # (B * num_return_sequences, new)
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            texts += [t.strip() for t in decoded]
    finally:
        model.train(was_training)
    return texts
