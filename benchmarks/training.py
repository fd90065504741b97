"""Training speed: seconds per optimisation step of PARADE, (IA)³ and LoRA on a frozen backbone.

One step is what ``PeftLitModule`` does per batch, without Lightning around it: zero the
gradients, forward with the causal-LM loss (``use_cache=False``, model in train mode), backward,
``AdamW(lr=1e-4)`` over the adapter parameters. The loss (``--loss``, an axis like
``--attention``) is ``scored`` by default, the method's :meth:`~methods.PeftMethod.training_loss`
that the module trains on (the vocabulary projection of the scored positions only,
:mod:`methods.lm_loss`), or ``full``, Hugging Face's ``model(labels=...).loss`` over every
position (what training did before 2026-12-06; same value, more work). The batch is
``--batch-size`` × ``--seq-len`` random token ids; the first ``--prompt-len`` positions are the
prompt (``prompt_mask`` for PARADE, labels ``-100`` there) and the loss covers the rest.

Rows: PARADE, IA3 (PEFT's k v d), the paper's budgeted IA3 (dim 16, q k u), LoRA r=4 on all
seven roles, and the **backbone alone**: a frozen backbone has nothing to train, so its row is
forward + backward of the same loss with respect to the *input embeddings* (which require
grad), without an optimizer. That is the floor every adapter method pays: to reach adapters
in the first layer the backward must pass through every layer, as here.

Precisions (adapters always stay fp32, as :meth:`PeftMethod.attach` makes them):

* ``fp32``: fp32 backbone weights, no autocast;
* ``bf16-mixed``: fp32 backbone weights under ``torch.autocast(device, torch.bfloat16)``
  (Lightning's ``precision="bf16-mixed"``, used by ``configs/cpu_quick.yaml``);
* ``bf16-weights``: bf16 backbone weights under the same autocast
  (``PeftLitModule(backbone_dtype="bfloat16")`` with ``bf16-mixed``).

Attention kernels (``--attention``, e.g. ``sdpa eager``): every row is also run with each kernel
(:func:`methods.backbones.set_attention` on the row's copy; default: the backbone's own, which is
transformers' ``sdpa``). On a CPU ``eager`` trains short rows faster (the quality study's
"Cost" table, ``docs/results/quality/README.md``, reproduced by the example below).

Per precision, every row is built (sharing the backbone weights) and warmed up (``--warmup``
steps; the first one's peak memory is the row's, as in inference.py), then ``--repeats``
rounds time one step of every row, in a rotating order so that background-load drifts hit all
rows alike (CUDA synchronised). Tables give the median with min–max, and the median forward /
backward / optimizer phases.

Examples::

    python benchmarks/training.py --repeats 3          # SmolLM2, fp32 and bf16-mixed
    python benchmarks/training.py --quick              # tiny model, seconds
    python benchmarks/training.py --methods parade --precisions bf16-mixed bf16-weights \
        --attention sdpa eager --seq-len 74 --prompt-len 70 --threads 1   # SST-2-sized rows
    python benchmarks/training.py --methods parade lora --precisions fp32 --attention eager \
        --loss scored full --seq-len 74 --prompt-len 70 --threads 1       # the loss's saving
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    add_common_arguments,
    count_adapter_parameters,
    describe_backbone,
    fill_defaults,
    finish_machine_info,
    fmt,
    goal,
    goal_lines,
    machine_info,
    machine_lines,
    paired_ratio,
    perturb_adapters,
    publish,
    resolve_device,
    rotated_rounds,
    shared_copy,
    summarize,
    synchronize,
    torch_threads,
    warm_up,
)
from methods import IA3, LoRA, PaperIA3, Parade, PeftMethod  # noqa: E402
from methods.backbones import set_attention  # noqa: E402
from methods.lm_loss import response_loss  # noqa: E402
from parade_lightning import load_backbone  # noqa: E402

METHODS: dict[str, tuple[str, Callable[[], PeftMethod] | None]] = {
    "backbone": ("backbone alone (fwd+bwd to input embeddings)", None),
    "parade": ("PARADE (r 12, q v u)", Parade),
    "ia3": ("IA3 (k v d)", IA3),
    "ia3-paper": ("IA3 paper (dim 16, q k u)", PaperIA3),
    "lora": ("LoRA r=4, 7 roles", lambda: LoRA(r=4)),
}
# precision -> (backbone weight dtype, autocast dtype or None)
PRECISIONS: dict[str, tuple[str, torch.dtype | None]] = {
    "fp32": ("float32", None),
    "bf16-mixed": ("float32", torch.bfloat16),
    "bf16-weights": ("bfloat16", torch.bfloat16),
}
FULL = {"backbone": "smollm2-135m", "batch_size": 8, "seq_len": 128, "prompt_len": 96,
        "repeats": None, "warmup": 2, "threads": None}
QUICK = {"backbone": "tiny-llama", "batch_size": 2, "seq_len": 32, "prompt_len": 24,
         "repeats": 2, "warmup": 1, "threads": 1}
PHASES = ("forward_s", "backward_s", "optimizer_s")
LOSSES = ("scored", "full")


def make_batch(vocab: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Random ids; prompt = the first ``prompt_len`` positions, loss on the rest."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (args.batch_size, args.seq_len), generator=generator)
    prompt = torch.arange(args.seq_len)[None, :].expand_as(ids) < args.prompt_len
    labels = ids.masked_fill(prompt, -100)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
             "prompt_mask": prompt}
    return {k: v.to(device) for k, v in batch.items()}


def make_step(
    model: nn.Module, batch: dict[str, torch.Tensor], autocast: torch.dtype | None,
    device: torch.device, loss_kind: str = "scored",
) -> Callable[[], dict[str, float]]:
    """One optimisation step, returning the seconds of its three phases."""
    method: PeftMethod | None = getattr(model, "peft_method", None)
    params = [p for _, p in method.named_adapter_parameters(model)] if method else []
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0) if params else None
    inputs = {k: batch[k] for k in ("attention_mask", "labels")}
    if method is not None:
        inputs.update(method.forward_inputs(batch))
    embed = model.get_input_embeddings()

    def cast() -> contextlib.AbstractContextManager:
        if autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=autocast)

    def step() -> dict[str, float]:
        synchronize(device)
        t0 = time.perf_counter()
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        with cast():
            if method is None:  # nothing trainable: differentiate w.r.t. the embeddings
                embeds = embed(batch["input_ids"]).detach().requires_grad_(True)
                if loss_kind == "scored":
                    loss = response_loss(model, batch["labels"], inputs_embeds=embeds,
                                         attention_mask=batch["attention_mask"])
                else:
                    loss = model(inputs_embeds=embeds, use_cache=False, **inputs).loss
            elif loss_kind == "scored":
                loss = method.training_loss(model, batch)
            else:
                loss = model(input_ids=batch["input_ids"], use_cache=False, **inputs).loss
        synchronize(device)
        t1 = time.perf_counter()
        loss.backward()
        synchronize(device)
        t2 = time.perf_counter()
        if optimizer is not None:
            optimizer.step()
        synchronize(device)
        t3 = time.perf_counter()
        return {"forward_s": t1 - t0, "backward_s": t2 - t1, "optimizer_s": t3 - t2,
                "step_s": t3 - t0}

    return step


def run_precision(
    backbone: nn.Module, precision: str, args: argparse.Namespace, device: torch.device,
) -> list[dict[str, Any]]:
    """All rows at one precision: build, warm up (measuring memory), then timed rounds."""
    weights, autocast = PRECISIONS[precision]
    batch = make_batch(backbone.get_input_embeddings().weight.shape[0], args, device)
    rows, steps = [], []
    for loss_kind, attention in ((lk, a) for lk in args.loss for a in args.attention or [None]):
        for key in args.methods:
            label, factory = METHODS[key]
            model = shared_copy(backbone)  # its own config: the kernel is set per copy
            if attention is not None:
                set_attention(model, attention)
            if factory is not None:
                torch.manual_seed(0)
                factory().attach(model)
                perturb_adapters(model, args.noise, seed=0)
            model.train()  # as PeftLitModule: backbone dropout (if any) active
            steps.append(make_step(model, batch, autocast, device, loss_kind))
            rows.append({"row": key, "label": label, "precision": precision,
                         "attention": model.config._attn_implementation, "loss": loss_kind,
                         "backbone_dtype": weights,
                         "autocast": str(autocast).removeprefix("torch.") if autocast else None,
                         "adapter_parameters": count_adapter_parameters(model)})
    for row, step in zip(rows, steps, strict=True):  # the first warm-up step measures memory
        row["memory"] = warm_up(step, device, args.warmup)
    samples: list[list[dict[str, float]]] = [[] for _ in rows]
    for i in rotated_rounds(range(len(rows)), args.repeats):
        samples[i].append(steps[i]())
    for row, got in zip(rows, samples, strict=True):
        row.update({k: summarize([s[k] for s in got]) for k in ("step_s", *PHASES)})
        row["samples"] = {"step_s": [round(s["step_s"], 5) for s in got]}
        print(f"  {precision:12s} {row['attention']:6s} {row['loss']:6s} {row['label']:46s} "
              f"step {fmt(row['step_s'], 3)} s", flush=True)
    return rows


def run_benchmark(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Every row of every precision; ``args.backbone_used`` gets each loaded backbone."""
    rows: list[dict[str, Any]] = []
    args.backbone_used = []
    model, loaded = None, None  # one backbone in memory at a time
    for precision in args.precisions:
        weights = PRECISIONS[precision][0]
        if weights != loaded:
            model = None  # drop the previous backbone before loading the next
            gc.collect()
            model, _ = load_backbone(args.backbone, dtype=weights)
            model, loaded = model.requires_grad_(False).to(device), weights
            args.backbone_used.append(describe_backbone(args.backbone, model))
        rows += run_precision(model, precision, args, device)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def evaluate_goals(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """PARADE's step ≤ 1.15 × IA3's (each IA3 row) and ≤ LoRA's, per precision and kernel."""
    goals = []
    for r in rows:
        if r["row"] != "parade":
            continue
        for other, limit, name in (("ia3", 1.15, "IA3 (k v d)"),
                                   ("ia3-paper", 1.15, "IA3 paper"), ("lora", 1.0, "LoRA")):
            peer = next((o for o in rows if o["row"] == other and o["precision"] ==
                         r["precision"] and o["attention"] == r["attention"]
                         and o.get("loss") == r.get("loss")), None)
            if peer is None:
                continue
            ratio = paired_ratio(r, peer, "step_s")  # same-round steps, see common.py
            where = r["precision"] if len({o["attention"] for o in rows}) == 1 else \
                f"{r['precision']}, {r['attention']}"
            if len({o.get("loss") for o in rows}) > 1:
                where += f", {r['loss']} loss"
            goals.append(goal(f"PARADE step time ≤ {limit} × {name}", ratio, limit,
                              ratio <= limit, where))
    return goals


def to_markdown(payload: dict[str, Any]) -> str:
    s, rows = payload["settings"], payload["rows"]
    mem_kind = rows[0]["memory"]["kind"] if rows else ""
    mem_head = "peak CUDA MiB (Δ)" if mem_kind.startswith("cuda") else "peak RSS MiB (Δ)"
    lines = [
        f"# Training-step benchmark: `{s['backbone']}` on {payload['machine']['device']}", "",
        f"Command: `{payload['command']}`", "", *machine_lines(payload["machine"]),
        *[f"- backbone used: `{b['name']}` = {b['class']}, {b['parameters'] / 1e6:,.1f} M "
          f"parameters, {b['layers']} layers, {b['dtype']} weights"
          f"{' (random)' if b['random_weights'] else ''}" for b in s["backbone_used"]], "",
        f"Batch {s['batch_size']} × {s['seq_len']} tokens (prompt {s['prompt_len']}, loss on "
        f"the rest); AdamW over the adapter parameters; median of {s['repeats']} steps after "
        f"{s['warmup']} warm-up (min–max). The backbone row is forward + backward to the input "
        "embeddings (nothing to optimise). See benchmarks/README.md.", "",
        f"| precision | attention | row | step s | forward s | backward s | optimizer s | "
        f"{mem_head} | params | loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = r["memory"]
        lines.append(
            f"| {r['precision']} | {r.get('attention', '')} | {r['label']} | "
            f"{fmt(r['step_s'], 3)} | "
            f"{r['forward_s']['median']:.3f} | {r['backward_s']['median']:.3f} | "
            f"{r['optimizer_s']['median']:.4f} | {mem['peak_mib']:.0f} ({mem['delta_mib']:+.0f})"
            f" | {r['adapter_parameters']:,} | {r.get('loss', 'full')} |")
    lines += ["", "## Goals", "", *goal_lines(payload["goals"]), ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--prompt-len", type=int, help="leading prompt positions (no loss)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16-mixed"],
                   choices=list(PRECISIONS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--attention", nargs="+", metavar="KERNEL",
                   help="attention kernels to time each row with (eager, sdpa, ...; default: "
                        "the backbone's own)")
    p.add_argument("--loss", nargs="+", default=["scored"], choices=LOSSES,
                   help="losses to time each row with: scored (the module's, logits of the "
                        "scored positions only) and/or full (Hugging Face's, every position)")
    p.add_argument("--repeats", type=int, help="timed steps per row (default 5 CPU, 20 GPU)")
    p.add_argument("--warmup", type=int)
    args = p.parse_args(argv)
    fill_defaults(args, QUICK, FULL)
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the first step measures the peak memory)")
    if not 0 < args.prompt_len < args.seq_len:
        p.error("--prompt-len must leave at least one prompt and one loss position")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write JSON and Markdown, and return the JSON payload."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = resolve_device(args.device)
    args.repeats = args.repeats or (20 if device.type == "cuda" else 5)
    with torch_threads(args.threads):
        machine = machine_info(device, "/".join(args.precisions))
        rows = run_benchmark(args, device)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings["device"] = str(device)
    payload = {"machine": finish_machine_info(machine), "settings": settings, "rows": rows}
    return publish("training", argv, args, device, payload, evaluate_goals(rows), to_markdown)


if __name__ == "__main__":
    main()
