"""``parade explain``: draw PARADE's pooler attention maps for prompts.

    parade explain --ckpt_path runs/…/checkpoints/best.ckpt --prompt "Is the sky blue?" \
        [--prompt …] [--layers 0 8 16 24] [--out explain/] [--chat_style llama2] \
        [--max_tokens 64 [--tail]]
    parade explain --backbone tiny-llama --prompt "hello there"   # no checkpoint: a fresh
                                                                   # (untrained) PARADE

For each prompt, ``<out>/pooler_map_<i>.png`` (a heat map: prompt tokens x (layer, capsule)),
the same images in TensorBoard (``<out>/tensorboard``, tag ``pooler_maps/prompt_<i>``) and the
weights themselves in ``<out>/pooler_maps.json`` (``{"prompts": [{"prompt", "tokens",
"layers", "weights": [layer][token][capsule]}]}``). The prompt is wrapped in ``--chat_style``
as the datamodules do for training (default ``llama2``, the paper's template), so the pooled
tokens are those a fine-tuned model sees. See :mod:`parade_lightning.pooler_maps` for what the
weights are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from datamodules.templates import CHAT_STYLES, render_prompt
from methods.adapter_files import load_adapter
from methods.backbones import load_backbone
from methods.registry import method_class, method_from_config
from parade_lightning.attention_plot import draw_pooler_map
from parade_lightning.pooler_maps import PoolerMaps, pooler_attention_maps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parade explain",
        description="Draw the PARADE pooler's attention over prompt tokens (eqs. 9-10).")
    parser.add_argument("--ckpt_path", help="a `parade fit` checkpoint (.ckpt) or an adapter "
                        "folder; without it a fresh method is attached to --backbone")
    parser.add_argument("--backbone", help="backbone name or path (default: the checkpoint's)")
    parser.add_argument("--method", default="Parade", help="without --ckpt_path: the method "
                        "class (short name or dotted path; default Parade)")
    parser.add_argument("--prompt", action="append", required=True,
                        help="a prompt (the query); repeat for several")
    parser.add_argument("--layers", type=int, nargs="+", help="decoder layers (0-based, "
                        "negative from the end; default four evenly spaced from layer 0)")
    parser.add_argument("--out", default="explain", help="output folder (default: explain)")
    parser.add_argument("--chat_style", default="llama2", choices=CHAT_STYLES)
    parser.add_argument("--max_tokens", type=int, help="draw only the first N prompt tokens")
    parser.add_argument("--tail", action="store_true",
                        help="with --max_tokens: draw the last N tokens instead of the first")
    parser.add_argument("--dtype", default="float32", help="backbone dtype (float32, bf16)")
    parser.add_argument("--device", default="cpu", help="where to run (cpu, cuda, cuda:1…)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a fresh method's init")
    return parser


def load_model(ckpt_path: str | None, backbone: str | None, method: str, dtype: str,
               seed: int = 0):
    """``(model, tokenizer)``: the backbone with the checkpoint's method and weights, or a
    freshly initialised ``method`` when no checkpoint is given."""
    adapter = load_adapter(ckpt_path) if ckpt_path else None
    name = backbone or (adapter.backbone if adapter else None)
    if not name:
        raise ValueError("parade explain: give --backbone (the checkpoint names none)"
                         if adapter else "parade explain: give --ckpt_path or --backbone")
    model, tokenizer = load_backbone(name, dtype=dtype)
    if adapter is not None:
        peft = method_from_config(adapter.method)
        peft.attach(model)
        peft.load_adapter_state_dict(model, adapter.state)
    else:
        torch.manual_seed(seed)
        method_class(method)().attach(model)
    return model, tokenizer


def write_maps(maps: PoolerMaps, prompts: list[str], out: Path,
               max_tokens: int | None = None, tail: bool = False) -> list[Path]:
    """PNGs, TensorBoard images and ``pooler_maps.json`` for every row of ``maps``."""
    out.mkdir(parents=True, exist_ok=True)
    images = []
    with SummaryWriter(str(out / "tensorboard")) as writer:
        for i in range(len(prompts)):
            path = out / f"pooler_map_{i}.png"
            rgb = draw_pooler_map(maps, i, path, max_tokens, tail)
            writer.add_image(f"pooler_maps/prompt_{i}", rgb, 0, dataformats="HWC")
            images.append(path)
    records = [{"prompt": p, "tokens": maps.tokens[i], "layers": maps.layers,
                "pooler": maps.pooler, "weights": maps.row(i).tolist()}
               for i, p in enumerate(prompts)]
    (out / "pooler_maps.json").write_text(json.dumps({"prompts": records}, ensure_ascii=False))
    return images


def main(argv: list[str] | None = None) -> list[Path]:
    """Run ``parade explain``; returns the PNG paths."""
    args = build_parser().parse_args(argv)
    model, tokenizer = load_model(args.ckpt_path, args.backbone, args.method, args.dtype,
                                  args.seed)
    model.to(args.device)
    texts = [render_prompt(tokenizer, args.chat_style, p) for p in args.prompt]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    maps = pooler_attention_maps(model, tokenizer, ids, args.layers)
    images = write_maps(maps, args.prompt, Path(args.out), args.max_tokens, args.tail)
    for path in images:
        print(path)
    return images
