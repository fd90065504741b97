"""PARADE's prefill cost against the bare backbone: operator count per layer and paired time.

On a GPU at batch 1 the prefill is bound by kernel launches and Python, not arithmetic, so
the number of aten operators a forward dispatches (counted with a ``TorchDispatchMode``:
kernels and view operators alike) is a device-independent measure of that overhead; the
paired wall-clock ratio (rounds alternate which row runs first) is the CPU's view of it.

The backbone is built from a ``config.json``-style file with random weights and without any
library loader, so the same script measures an older checkout of the library too::

    python benchmarks/prefill_ops.py configs/backbones/llama-bench-small.json --out X.json
    git archive <old commit> | tar -x -C /tmp/old && cd /tmp/old && \\
        PYTHONPATH=. python <this file> <config> --out Y.json      # the same, before a change
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoConfig, AutoModelForCausalLM

if __package__ in (None, ""):  # run as a script: make the current tree's library importable
    sys.path.insert(0, os.getcwd())

from methods import Parade  # noqa: E402


class CountOps(TorchDispatchMode):
    """Counts every aten operator dispatched inside the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def build(config_path: Path) -> torch.nn.Module:
    fields = {k: v for k, v in json.loads(config_path.read_text()).items()
              if not k.startswith("_")}
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def measure(config_path: Path, batch_sizes: list[int], tokens: int, rounds: int) -> dict:
    base = build(config_path)
    parade = build(config_path)
    Parade().attach(parade)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in parade.peft_method.named_adapter_parameters(parade):
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    layers = base.config.num_hidden_layers
    results = {}
    for batch in batch_sizes:
        ids = torch.randint(3, base.config.vocab_size, (batch, tokens), generator=generator)
        mask = torch.ones_like(ids)
        mask[0, :5] = 0  # one left-padded row

        def prefill(model: torch.nn.Module, ids=ids, mask=mask) -> None:
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask, use_cache=True)

        ops = {}
        for name, model in (("base", base), ("parade", parade)):
            with CountOps() as counter:
                prefill(model)
            ops[name] = counter.count
        times: dict[str, list[float]] = {"base": [], "parade": []}
        for r in range(rounds):
            order = ("base", "parade") if r % 2 == 0 else ("parade", "base")
            for name in order:
                model = base if name == "base" else parade
                start = time.perf_counter()
                prefill(model)
                times[name].append(time.perf_counter() - start)
        ratios = [p / b for p, b in zip(times["parade"], times["base"], strict=True)]
        results[str(batch)] = {
            "ops_base": ops["base"], "ops_parade": ops["parade"],
            "extra_ops_per_layer": (ops["parade"] - ops["base"]) / layers,
            "base_ms": statistics.median(times["base"]) * 1e3,
            "parade_ms": statistics.median(times["parade"]) * 1e3,
            "paired_overhead": statistics.median(ratios) - 1.0,
        }
        print(batch, results[str(batch)], flush=True)
    return results


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path, help="config.json-style file with a model_type")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--tokens", type=int, default=234)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    results = measure(args.config, args.batch_sizes, args.tokens, args.rounds)
    payload = {"config": str(args.config), "tokens": args.tokens, "rounds": args.rounds,
               "threads": args.threads, "torch": torch.__version__, "tree": os.getcwd(),
               "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
               "batches": results}
    if args.out:
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


if __name__ == "__main__":
    main()
