"""Inference speed and memory of PARADE, LoRA and (IA)³ (paper section 4.5, table 4, appendix F).

Setting (appendix F): the news-article instruction below, put through the backbone's chat
template (tokenizers without one repeat the text to ~274 tokens); 32 new tokens with
``min_new_tokens = max_new_tokens`` so every run decodes exactly 32; greedy (beam 1) and beam 3;
batches of 1 and 8 copies of the prompt. Adapter parameters get Gaussian noise so that no
method is an identity. Every call goes through the library's own entry points:
:func:`parade_lightning.generate` for single adapters, :meth:`MultiTenantModel.generate` for
mixed-tenant batches, and ``generate(peft_model, ..., adapter_names=[...])`` for PEFT's
mixed-adapter LoRA batches (the external peer).

How one generate call is split (forward hooks on the causal LM, first in line):

* **prefill** = the first forward of ``generate`` (the prompt, ``use_cache=True``, all
  ``batch × beams`` rows), timed from its pre-hook to its post-hook (CUDA synchronised);
* **decode ms/token** = (end of the last forward − end of the prefill) / (new tokens − 1):
  each of those steps selects one token and runs one single-token forward, so the figure
  includes Hugging Face's per-step logits processing and beam bookkeeping;
* **decode tok/s** = batch / decode step time; **e2e tok/s** = batch × new tokens / the whole
  call (padding, gathering tenants' weights, prefill, decode, detokenising).

All rows are built first (on one shared copy of the backbone weights) and warmed up
(``--warmup`` calls each); then ``--repeats`` rounds call every row once, in a rotating order,
so that changes in the machine's background load hit every row alike. Tables give the median
with min–max; the goals compare rows by paired ratios (median over rounds of the ratio of
two rows' samples from the same round). Peak memory is taken over each row's first warm-up call:
``torch.cuda.max_memory_allocated`` after a reset on a GPU; on the CPU the process RSS
high-water mark after resetting it to the current RSS (``/proc/self/clear_refs``). Δ is the
peak minus the memory in use just before the call (activations, KV cache, beams, gathered
tenant weights); the absolute peak also counts everything alive in the process (the shared
weights, every row's adapters, merged LoRA's private weight copy), so compare Δ across rows.

Examples::

    python benchmarks/inference.py --repeats 3 --max-rows 8      # SmolLM2 on this machine
    python benchmarks/inference.py --backbone meta-llama/Llama-2-7b-hf --dtype float16
    python benchmarks/inference.py --quick                       # tiny model, seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import inference_rows as rows_lib  # noqa: E402
from benchmarks.common import (  # noqa: E402
    add_common_arguments,
    describe_backbone,
    device_bandwidth,
    fill_defaults,
    finish_machine_info,
    fmt,
    goal_lines,
    machine_info,
    machine_lines,
    publish,
    resolve_device,
    resolve_dtype_name,
    rotated_rounds,
    summarize,
    synchronize,
    torch_threads,
    warm_up,
)
from benchmarks.inference_goals import bandwidth_lines, bandwidth_rows, evaluate_goals  # noqa: E402
from datamodules.templates import render_prompt  # noqa: E402
from parade_lightning import load_backbone  # noqa: E402

NEWS_INSTRUCTION = (
    "Generate a blog post of 500 words or less that discusses the following news article:\n\n"
    "The Department of Child Protection (DCP) must pay compensation and medical expenses to a "
    "youth worker who developed pericarditis after getting a Covid booster under a workplace "
    "vaccination directive, the South Australian Employment Tribunal has ruled.\n\n"
    "In a decision handed down on 15 January 2024, the Tribunal determined that Daniel "
    "Shepherd’s employment was “a significant contributing cause” to his injury, which has "
    "since rendered him incapable of performing his role at work.\n\n"
    "Shepherd got a Covid booster in February 2022 as a requirement for his ongoing employment "
    "with the DCP. The DCP admitted that Shepherd’s pericarditis had been caused by the "
    "booster, but denied responsibility for the injury, arguing that it did not arise from "
    "Shepherd’s employment, but from a lawful State Government Public Health Order (PHO), "
    "issued under the Emergency Management Act 2004 (EMA)."
)
PAPER_PROMPT_TOKENS = 274  # appendix F: the LoRA run's prompt length on LLaMA-2

FULL = {"threads": None, "backbone": "smollm2-135m", "prompt_tokens": None, "new_tokens": 32,
        "repeats": None, "warmup": None, "batch_sizes": [1, 8], "beams": [1, 3], "tenant_batch": 8,
        "tenant_beams": [1], "compile_backend": "inductor"}
# --quick: a smoke test of every row (one thread: tiny matmuls only lose from threading)
QUICK = {"backbone": "tiny-llama", "prompt_tokens": 24, "new_tokens": 4, "repeats": 1,
         "warmup": 1, "batch_sizes": [1, 2], "beams": [1, 2], "tenant_batch": 2,
         "tenant_beams": [1], "threads": 1, "compile_backend": "aot_eager"}


def build_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt_tokens: int | None
) -> tuple[list[int], str]:
    """The appendix-F prompt as token ids, and how it was made.

    With a chat template the instruction is the user turn (plus the template's generation
    prompt); without one the instruction is repeated and cut to ``prompt_tokens`` (default
    274, the paper's length). ``prompt_tokens`` shorter than the templated prompt keeps its
    *last* tokens, so the assistant marker stays where generation starts.
    """
    if getattr(tokenizer, "chat_template", None):
        text = render_prompt(tokenizer, "tokenizer", NEWS_INSTRUCTION)
        ids, how = tokenizer(text, add_special_tokens=False)["input_ids"], "chat template"
    else:
        unit = tokenizer(NEWS_INSTRUCTION + "\n\n", add_special_tokens=False)["input_ids"]
        want = prompt_tokens or PAPER_PROMPT_TOKENS
        ids = (unit * (want // len(unit) + 1))[:want]
        how = "no chat template: instruction repeated and cut"
    if prompt_tokens is not None and len(ids) > prompt_tokens:
        ids, how = ids[-prompt_tokens:], f"{how}, cut to its last {prompt_tokens} tokens"
    return list(ids), how


class ForwardClock:
    """Forward hooks that time the prefill and the end of the last decode step of a call."""

    def __init__(self, module: nn.Module, device: torch.device, new_tokens: int) -> None:
        self.device, self.new_tokens = device, new_tokens
        self.handles = [
            module.register_forward_pre_hook(self._pre, prepend=True),  # before PARADE's hook
            module.register_forward_hook(self._post),
        ]
        self.reset()

    def reset(self) -> None:
        self.calls, self.start, self.prefill_end, self.last_end = 0, 0.0, 0.0, 0.0

    # the clock runs eagerly even around a compiled forward (the hooks are separate frames)
    @torch.compiler.disable
    def _pre(self, module: nn.Module, args: tuple) -> None:
        if self.calls == 0:
            synchronize(self.device)
            self.start = time.perf_counter()

    @torch.compiler.disable
    def _post(self, module: nn.Module, args: tuple, out: Any) -> None:
        self.calls += 1
        # synchronise only where a reading is taken; HF generate already syncs every step
        if self.calls == 1 or self.calls == self.new_tokens:
            synchronize(self.device)
            now = time.perf_counter()
            self.prefill_end = now if self.calls == 1 else self.prefill_end
            self.last_end = now

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


SAMPLES = ("prefill_ms", "decode_ms_per_token", "e2e_s")


@dataclass
class Task:
    """One table row: a served configuration at one batch size, beam size and tenant count."""

    spec: rows_lib.Served
    clock: ForwardClock
    batch: int
    beams: int
    tenants: int | None
    run: Callable[[], Any]
    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SAMPLES})
    memory: dict[str, Any] = field(default_factory=dict)

    def call(self, device: torch.device) -> float:
        """Run once; returns the wall-clock seconds of the whole call."""
        self.clock.reset()
        synchronize(device)
        start = time.perf_counter()
        self.run()
        synchronize(device)
        return time.perf_counter() - start

    def timed_call(self, device: torch.device, new_tokens: int) -> None:
        total = self.call(device)
        if self.clock.calls != new_tokens:
            raise RuntimeError(f"{self.spec.label}: expected {new_tokens} forwards (1 prefill + "
                               f"decode steps), saw {self.clock.calls}; did generation stop early?")
        clock = self.clock
        self.samples["prefill_ms"].append((clock.prefill_end - clock.start) * 1e3)
        decode = (clock.last_end - clock.prefill_end) * 1e3 / (new_tokens - 1)
        self.samples["decode_ms_per_token"].append(decode)
        self.samples["e2e_s"].append(total)

    def result(self, new_tokens: int) -> dict[str, Any]:
        stats = {k: summarize(v) for k, v in self.samples.items()}
        stats["decode_tokens_per_s"] = summarize(
            [self.batch * 1e3 / ms for ms in self.samples["decode_ms_per_token"]])
        stats["e2e_tokens_per_s"] = summarize(
            [self.batch * new_tokens / s for s in self.samples["e2e_s"]])
        return {"row": self.spec.key, "label": self.spec.label, "mode": self.spec.mode,
                "batch_size": self.batch, "num_beams": self.beams, "tenants": self.tenants,
                "adapter_parameters": self.spec.parameters, **stats, "memory": self.memory,
                "samples": {k: [round(x, 5) for x in v] for k, v in self.samples.items()}}


def generate_kwargs(new_tokens: int, beams: int) -> dict[str, Any]:
    return {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "num_beams": beams}


def run_benchmark(args: argparse.Namespace, device: torch.device, dtype: str) -> dict[str, Any]:
    """Build every row, warm each up (measuring its memory), then time them in rounds."""
    model, tokenizer = load_backbone(args.backbone, dtype=dtype)
    model.requires_grad_(False).to(device)
    backbone = describe_backbone(args.backbone, model)
    prompt, prompt_how = build_prompt(tokenizer, args.prompt_tokens)
    cells = [(b, k, None) for b in args.batch_sizes for k in args.beams
             if args.max_rows is None or b * k <= args.max_rows]
    mixed = [(args.tenant_batch, k, n) for k in args.tenant_beams
             for n in sorted({1, args.tenant_batch})]
    with tempfile.TemporaryDirectory() as scratch:  # PEFT export folders, read while building
        specs = [rows_lib.build(key, model, tokenizer, args, Path(scratch))
                 for key in (*args.methods, *args.tenant_methods)]
    tasks: list[Task] = []
    for spec in specs:  # hooks only now: shared copies must not copy a clock's hooks
        clock = ForwardClock(spec.hooked, device, args.new_tokens)
        for batch, beams, tenants in cells if spec.mode == "single" else mixed:
            run = spec.runner([prompt] * batch, tenants, generate_kwargs(args.new_tokens, beams))
            tasks.append(Task(spec, clock, batch, beams, tenants, run))
    # rounds visit the tasks cell by cell (all rows of one batch/beam/tenant cell back to
    # back), so that the rows a goal compares ran close in time; small cells first
    schedule = sorted(tasks, key=lambda t: (t.spec.mode != "single", t.batch * t.beams,
                                            t.batch, t.beams, t.tenants or 0))
    for task in schedule:  # warm-up; the first call's peak memory is the row's
        task.memory = warm_up(lambda t=task: t.call(device), device, args.warmup)
    for n, task in enumerate(rotated_rounds(schedule, args.repeats), start=1):
        task.timed_call(device, args.new_tokens)
        if n % len(schedule) == 0:
            print(f"round {n // len(schedule)}/{args.repeats} done", flush=True)
    results = [task.result(args.new_tokens) for task in tasks]
    for r in results:
        print(f"  {r['label']:34s} batch {r['batch_size']} beams {r['num_beams']} tenants "
              f"{r['tenants']}: prefill {fmt(r['prefill_ms'])} ms, decode "
              f"{fmt(r['decode_ms_per_token'], 2)} ms/tok", flush=True)
    return {"prompt_tokens": len(prompt), "prompt_source": prompt_how, "rows": results,
            "backbone": backbone}


def backbone_line(b: dict[str, Any]) -> str:
    return (f"- backbone used: `{b['name']}` = {b['class']}, {b['parameters'] / 1e6:,.1f} M "
            f"parameters, hidden {b['hidden_size']}, {b['layers']} layers, {b['dtype']}"
            f"{' (random weights)' if b['random_weights'] else ''}")


def to_markdown(payload: dict[str, Any]) -> str:
    s, rows = payload["settings"], payload["rows"]
    mem_kind = rows[0]["memory"]["kind"] if rows else ""
    mem_head = "peak CUDA MiB (Δ)" if mem_kind.startswith("cuda") else "peak RSS MiB (Δ)"
    head = ["prefill ms", "decode ms/token", "decode tok/s", "e2e tok/s", mem_head, "params"]
    lines = [
        f"# Inference benchmark: `{s['backbone']}` on {payload['machine']['device']}", "",
        f"Command: `{payload['command']}`", "", *machine_lines(payload["machine"]),
        backbone_line(payload["backbone"]), "",
        f"Appendix-F news instruction, {s['prompt_tokens']} prompt tokens ({s['prompt_source']}); "
        f"{s['new_tokens']} new tokens (min = max); median of {s['repeats']} runs after "
        f"{s['warmup']} warm-up (min–max). Decode ms/token = (end of last forward − end of "
        "prefill) / (new tokens − 1); see benchmarks/README.md.", "",
    ]
    for mode, title, key_col in (("single", "Single adapter", "batch"),
                                 ("multi-tenant", "Multi-tenant batches", "tenants")):
        part = [r for r in rows if r["mode"] == mode]
        if not part:
            continue
        cols = ["row", "batch", "beams"] + (["tenants"] if key_col == "tenants" else []) + head
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)]
        for r in part:
            mem = r["memory"]
            cells = [r["label"], str(r["batch_size"]), str(r["num_beams"])]
            cells += [str(r["tenants"])] if key_col == "tenants" else []
            cells += [fmt(r["prefill_ms"]), fmt(r["decode_ms_per_token"], 2),
                      fmt(r["decode_tokens_per_s"]), fmt(r["e2e_tokens_per_s"]),
                      f"{mem['peak_mib']:.0f} ({mem['delta_mib']:+.0f})",
                      f"{r['adapter_parameters']:,}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += bandwidth_lines(payload)
    lines += ["## Goals", "", *goal_lines(payload["goals"]), ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto "
                   "(float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--prompt-tokens", type=int, help="cut/repeat the prompt to this length")
    p.add_argument("--new-tokens", type=int)
    p.add_argument("--repeats", type=int, help="timed runs per cell (default 5 CPU, 10 GPU)")
    p.add_argument("--warmup", type=int, help="untimed runs per cell (default 1 CPU, 2 GPU)")
    p.add_argument("--batch-sizes", type=int, nargs="+")
    p.add_argument("--beams", type=int, nargs="+")
    p.add_argument("--max-rows", type=int, help="skip cells with batch × beams above this")
    p.add_argument("--methods", nargs="*", default=list(rows_lib.SINGLE),
                   choices=list(rows_lib.SINGLE))
    p.add_argument("--tenant-methods", nargs="*", default=list(rows_lib.TENANT),
                   choices=list(rows_lib.TENANT))
    p.add_argument("--tenant-batch", type=int, help="batch (and most tenants) of mixed rows")
    p.add_argument("--tenant-beams", type=int, nargs="+")
    p.add_argument("--compile-backend", help="torch.compile backend of the '-compiled' rows "
                   "(inductor: CUDA graphs on a GPU; aot_eager: traces only, for smoke tests)")
    p.add_argument("--bandwidth-gbs", type=float, help="device memory bandwidth in GB/s for "
                   "the bandwidth fraction (default: measured by a device copy; GPU only)")
    args = p.parse_args(argv)
    fill_defaults(args, QUICK, FULL)
    if args.new_tokens < 2:
        p.error("--new-tokens must be at least 2 (one prefill and one decode step)")
    if args.warmup is not None and args.warmup < 1:
        p.error("--warmup must be at least 1 (the first call measures the peak memory)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write JSON and Markdown, and return the JSON payload."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = resolve_device(args.device)
    dtype = resolve_dtype_name(args.dtype, device)
    args.repeats = args.repeats or (10 if device.type == "cuda" else 5)
    args.warmup = args.warmup if args.warmup is not None else (2 if device.type == "cuda" else 1)
    with torch_threads(args.threads):
        machine = machine_info(device, dtype)
        measured = run_benchmark(args, device, dtype)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings.update(device=str(device), dtype=dtype, prompt_tokens=measured["prompt_tokens"],
                    prompt_source=measured["prompt_source"])
    bandwidth = args.bandwidth_gbs or device_bandwidth(device)
    weight_bytes = measured["backbone"]["decode_weight_bytes"]
    payload = {"machine": finish_machine_info(machine), "settings": settings,
               "backbone": measured["backbone"], "rows": measured["rows"],
               "bandwidth": {
                   "weight_bytes": weight_bytes, "bandwidth_gbs": bandwidth,
                   "bandwidth_source": "given" if args.bandwidth_gbs else "measured device copy",
                   "rows": bandwidth_rows(measured["rows"], weight_bytes, bandwidth),
                   "note": None if bandwidth else "no GPU (the fraction is a GPU-only row)"}}
    goals = evaluate_goals(measured["rows"], device.type)
    return publish("inference", argv, args, device, payload, goals, to_markdown)


if __name__ == "__main__":
    main()
