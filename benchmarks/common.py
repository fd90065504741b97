"""Helpers shared by the benchmark scripts: devices, model copies, statistics, memory, output.

Nothing here times anything itself; the scripts decide what a measured region is.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import itertools
import json
import os
import platform
import re
import resource
import shlex
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results" / "benchmarks"
MIB = 1024 * 1024


# ---------------------------------------------------------------- devices and models
def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA device when one is present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype_name(name: str, device: torch.device) -> str:
    """``auto`` is float32 on the CPU and bfloat16 on a GPU (the usual serving dtype there)."""
    if name == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return name


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that a wall-clock reading covers the work before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree that shares its parameter and buffer tensors.

    Methods install modules and hooks in place, so every benchmark row needs its own module
    tree; sharing the (frozen) weights avoids reloading the backbone and keeps one copy of
    them in memory. Never merge LoRA into a shared copy unless nothing runs after it.
    """
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def perturb_adapters(model: nn.Module, std: float = 0.02, seed: int = 0) -> None:
    """Add Gaussian noise to every adapter parameter.

    Identity-initialised adapters (LoRA's ``B = 0``, PARADE's ``W_up = 0``) still run all their
    arithmetic, but noise makes sure no code path can short-cut a no-op.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in model.peft_method.named_adapter_parameters(model):
            noise = torch.randn(param.shape, generator=generator) * std
            param.add_(noise.to(param.device, param.dtype))


def count_adapter_parameters(model: nn.Module) -> int:
    method = getattr(model, "peft_method", None)
    return 0 if method is None else method.num_trainable_parameters(model)


# ---------------------------------------------------------------- statistics
def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (the median resists one-off stalls)."""
    if not values:
        raise ValueError("no measurements to summarise")
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def paired_ratio(a: dict[str, Any], b: dict[str, Any], metric: str) -> float:
    """Median over rounds of ``a ÷ b`` for ``metric``, pairing the samples of the same round.

    Both rows ran once per round, close in time, so a burst of background load inflates both
    sides of a pair; the median of the pairs' ratios is steadier than a ratio of medians.
    """
    xs, ys = a["samples"][metric], b["samples"][metric]
    return statistics.median(x / y for x, y in zip(xs, ys, strict=True))


def fmt(stat: dict[str, float] | None, digits: int = 1) -> str:
    """``median (min–max)`` for a Markdown cell."""
    if stat is None:
        return "–"
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}–{stat['max']:.{digits}f})"


# ---------------------------------------------------------------- memory
def _proc_status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS, so the RSS before a region is not inflated."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the baseline may include freed pages; the delta is then smaller


def _reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark (``VmHWM``) to the current RSS (Linux ≥ 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory of one region: the CUDA allocator's peak, or the process RSS high-water mark.

    On the CPU the high-water mark is reset at :meth:`start` (``/proc/self/clear_refs``), so
    the peak belongs to the region, not to model loading; ``delta_mib`` subtracts the RSS at
    the start (weights, Python, earlier rows' retained heap). Where the mark cannot be reset,
    the process-lifetime peak (``ru_maxrss``) is reported and labelled as such.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.before = 0.0
        self.kind = ""

    def start(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device) / MIB
            self.kind = "cuda_max_memory_allocated"
            return
        _release_free_heap()
        reset = _reset_rss_peak()
        rss = _proc_status_kib("VmRSS")
        self.before = (rss or 0) / 1024
        self.kind = "rss_hwm_reset" if reset and rss is not None else "ru_maxrss_lifetime"

    def stop(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / MIB
        elif self.kind == "rss_hwm_reset":
            peak = (_proc_status_kib("VmHWM") or 0) / 1024
        else:
            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB
        return {"kind": self.kind, "peak_mib": round(peak, 1),
                "delta_mib": round(peak - self.before, 1)}


# ---------------------------------------------------------------- machine and output
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def finish_machine_info(info: dict[str, Any]) -> dict[str, Any]:
    """Add the load average at the end of the run."""
    info["load_average_end"] = _load_average()
    return info


def machine_info(device: torch.device, dtype: str) -> dict[str, Any]:
    """What the numbers depend on: hardware, library versions, dtype and thread count."""
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": dtype,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        # other processes on the machine distort CPU timings; the 1-minute load at the start
        # lets a reader judge (the scripts add the load at the end)
        "load_average_start": _load_average(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def machine_lines(info: dict[str, Any]) -> list[str]:
    hardware = info.get("gpu") or f"{info['cpu']} ({info['cpu_cores']} cores)"
    return [
        f"- device: `{info['device']}`, {hardware}",
        f"- torch {info['torch']} ({info['torch_threads']} threads), transformers "
        f"{info['transformers']}, peft {info['peft']}, Python {info['python']}",
        f"- dtype: {info['dtype']}; platform: {info['platform']}",
        f"- 1-minute load average: {info.get('load_average_start')} at the start, "
        f"{info.get('load_average_end')} at the end (on {info['cpu_cores']} cores; load above "
        "the thread count means other processes competed for the CPU)",
    ]


def command_line(script: str, argv: Sequence[str]) -> str:
    return shlex.join(["python", script, *argv])


def default_out(kind: str, backbone: str, device: torch.device) -> Path:
    """``docs/results/benchmarks/<kind>_<backbone>_<device>.json`` (backbone made file-safe)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(backbone.rstrip("/")).name or backbone)
    return RESULTS / f"{kind}_{slug}_{device.type}.json"


def write_results(out: Path, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``out`` (JSON) and the Markdown next to it (same name, ``.md``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown)
    return out, md


def goal(name: str, value: float, threshold: float, holds: bool, detail: str) -> dict[str, Any]:
    """One evaluated goal: the measured ratio, its threshold and whether it holds."""
    return {"goal": name, "value": round(value, 4), "threshold": threshold, "holds": bool(holds),
            "detail": detail}


def goal_lines(goals: Sequence[dict[str, Any]]) -> list[str]:
    if not goals:
        return ["(no goal could be evaluated: a row it compares was not run)"]
    lines = ["| goal | measured | threshold | holds |", "|---|---|---|---|"]
    for g in goals:
        lines.append(f"| {g['goal']} — {g['detail']} | {g['value']:.3f} | {g['threshold']} | "
                     f"{'yes' if g['holds'] else '**no**'} |")
    return lines


# ----------------------------------------------------------------------------- measuring rows


def warm_up(call: Callable[[], Any], device: torch.device, times: int) -> dict[str, Any]:
    """Run ``call`` ``times`` times (at least once) untimed; the first call's peak memory."""
    memory = PeakMemory(device)
    memory.start()
    call()
    peak = memory.stop()
    for _ in range(times - 1):
        call()
    return peak


def rotated_rounds(items: Sequence[Any], repeats: int) -> Iterator[Any]:
    """Every item once per round, each round starting one further, so that a drift in the
    machine's background load hits all rows alike instead of a few."""
    for r in range(repeats):
        start = r % len(items)
        yield from [*items[start:], *items[:start]]


# ----------------------------------------------------------------------------- script scaffolding


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options both benchmarks share (backbone, device, threads, noise, quick, out)."""
    parser.add_argument("--backbone",
                        help="alias, .gguf, local folder or hub id (default smollm2-135m)")
    parser.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--noise", type=float, default=0.02, help="std of the adapter noise")
    parser.add_argument("--quick", action="store_true", help="tiny model, seconds (smoke test)")
    parser.add_argument("--out", type=Path, help="JSON path (the .md goes next to it)")


def fill_defaults(args: argparse.Namespace, quick: dict[str, Any], full: dict[str, Any]) -> None:
    """Options left unset take the ``--quick`` or the full setting's value."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` CPU threads inside (restored after: main() may run inside a test)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def publish(kind: str, argv: Sequence[str], args: argparse.Namespace, device: torch.device,
            payload: dict[str, Any], goals: list[dict[str, Any]],
            to_markdown: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """Add the command and goals to ``payload``, write its JSON and Markdown, return it."""
    payload = {"benchmark": kind, "command": command_line(f"benchmarks/{kind}.py", argv),
               **payload, "goals": goals}
    out = args.out or default_out(kind, args.backbone, device)
    json_path, md_path = write_results(out, payload, to_markdown(payload))
    print(f"wrote {json_path} and {md_path}")
    return payload


# ---------------------------------------------------------------- backbone and bandwidth


def decode_weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights one decode step reads: every parameter once, except an untied
    input embedding table (a step reads only its batch's rows of it)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is None or embed.weight is not head.weight:
        total -= embed.weight.numel() * embed.weight.element_size()
    return total


def describe_backbone(name: str, model: nn.Module) -> dict[str, Any]:
    """What was actually loaded (printed, and stored in the results): class, size, shape."""
    config = model.config
    info = {
        "name": name, "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "hidden_size": getattr(config, "hidden_size", None),
        "layers": getattr(config, "num_hidden_layers", None),
        "random_weights": name.startswith("random:"),
        "decode_weight_bytes": decode_weight_bytes(model),
    }
    print(f"backbone used: {name} = {info['class']}, {info['parameters'] / 1e6:,.1f} M "
          f"parameters, hidden {info['hidden_size']}, {info['layers']} layers, {info['dtype']}"
          f"{', random weights' if info['random_weights'] else ''}", flush=True)
    return info


def device_bandwidth(device: torch.device, mib: int = 1024, repeats: int = 10) -> float | None:
    """Measured memory bandwidth of a CUDA device in GB/s (a large device-to-device copy
    reads and writes every byte once); ``None`` on other devices."""
    if device.type != "cuda":
        return None
    src = torch.empty(mib * MIB, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        dst.copy_(src)
    end.record()
    synchronize(device)
    seconds = start.elapsed_time(end) / 1e3
    return 2 * src.numel() * repeats / seconds / 1e9
