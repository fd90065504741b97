"""The inference benchmark's goals (issue 14) as paired ratios, and the bandwidth fraction.

Every ratio pairs two rows' samples from the same round (:func:`benchmarks.common.paired_ratio`).
Decode ratios are ``other's ms/token ÷ this row's`` (> 1: this row is faster); a prefill
overhead is ``PARADE's prefill ÷ base's − 1``. Goals that the issue sets for a GPU only are
evaluated on any device but say so in their detail, so a CPU table never reads as a GPU claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.common import goal, paired_ratio

# (PARADE row, its base row, label)
PAIRS = (("parade", "base", "eager"), ("parade-compiled", "base-compiled", "compiled decode"))


def _finder(rows: Sequence[dict[str, Any]]):
    def find(key: str, batch: int, beams: int, tenants: int | None = None) -> dict | None:
        return next((r for r in rows if r["row"] == key and r["batch_size"] == batch
                     and r["num_beams"] == beams and r["tenants"] == tenants), None)
    return find


def speedup(row: dict, other: dict) -> float:
    """How many times faster ``row`` decodes than ``other`` (paired)."""
    return paired_ratio(other, row, "decode_ms_per_token")


def evaluate_goals(rows: Sequence[dict[str, Any]], device_type: str) -> list[dict[str, Any]]:
    """The issue's targets for every cell where both compared rows ran."""
    find, gpu = _finder(rows), device_type == "cuda"
    goals = []
    for parade_key, base_key, kind in PAIRS:
        for r in (r for r in rows if r["row"] == parade_key):
            b, k = r["batch_size"], r["num_beams"]
            cell = f"{kind}, batch {b}, beams {k}"
            base = find(base_key, b, k)
            if base:
                ratio = speedup(r, base)
                goals.append(goal("PARADE decode tok/s ≥ 0.97 × base", ratio, 0.97,
                                  ratio >= 0.97, cell))
            if base and kind == "eager":
                over = paired_ratio(r, base, "prefill_ms") - 1.0
                limit = 0.25 if gpu and b == 1 else 0.10
                goals.append(goal(f"PARADE prefill overhead over base ≤ {limit:.0%}", over,
                                  limit, over <= limit, cell))
            lora = find("lora", b, k)
            if lora and kind == "eager":
                ratio = speedup(r, lora)
                ceiling = f" (base ÷ LoRA = {speedup(base, lora):.3f})" if base else ""
                goals.append(goal("PARADE decode tok/s ≥ 1.2 × LoRA unmerged", ratio, 1.2,
                                  ratio >= 1.2, cell + ceiling))
    for r in (r for r in rows if r["row"] == "base-compiled" and r["batch_size"] == 1):
        eager = find("base", 1, r["num_beams"])
        if eager:
            ratio = speedup(r, eager)
            where = "" if gpu else " (a GPU goal; CPU value for reference)"
            goals.append(goal("compiled base decode ≥ 3 × eager base", ratio, 3.0, ratio >= 3.0,
                              f"batch 1, beams {r['num_beams']}{where}"))
    for key in ("mt-parade", "mt-parade-compiled"):
        for r in (r for r in rows if r["row"] == key and r["tenants"] != 1):
            b, k, n = r["batch_size"], r["num_beams"], r["tenants"]
            cell = f"{key}, batch {b}, beams {k}, {n} tenants"
            one, peft = find(key, b, k, 1), find("peft-lora", b, k, n)
            if one:
                ratio = speedup(r, one)
                goals.append(goal(f"PARADE {n} tenants ≥ 0.95 × 1 tenant (decode tok/s)",
                                  ratio, 0.95, ratio >= 0.95, cell))
            if peft and key == "mt-parade":
                ratio = speedup(r, peft)
                goals.append(goal("PARADE mixed batch faster than PEFT mixed LoRA (decode tok/s)",
                                  ratio, 1.0, ratio > 1.0, cell))
    return goals


def bandwidth_rows(rows: Sequence[dict[str, Any]], weight_bytes: int,
                   bandwidth_gbs: float | None) -> list[dict[str, Any]]:
    """Fraction of the memory-bandwidth limit per greedy row: weight bytes read per decode
    step ÷ the step's time ÷ the device bandwidth (``None``: not measured, e.g. on a CPU)."""
    if not bandwidth_gbs:
        return []
    out = []
    for r in rows:
        if r["num_beams"] != 1 or r["mode"] != "single":
            continue
        step_s = r["decode_ms_per_token"]["median"] / 1e3
        achieved = weight_bytes / step_s / 1e9
        out.append({"row": r["row"], "batch_size": r["batch_size"],
                    "weights_gb_per_s": round(achieved, 1),
                    "fraction": round(achieved / bandwidth_gbs, 4)})
    return out


def bandwidth_lines(payload: dict[str, Any]) -> list[str]:
    info = payload.get("bandwidth") or {}
    lines = ["## Memory-bandwidth fraction", ""]
    if not info.get("rows"):
        return lines + [f"not measured: {info.get('note', 'a GPU-only row')}", ""]
    lines += [f"Weights read per decode step: {info['weight_bytes'] / 1e9:.2f} GB; device "
              f"bandwidth {info['bandwidth_gbs']:.0f} GB/s ({info['bandwidth_source']}).", "",
              "| row | batch | weights GB/s | fraction of the bandwidth |", "|---|---|---|---|"]
    lines += [f"| {r['row']} | {r['batch_size']} | {r['weights_gb_per_s']} | {r['fraction']:.3f} |"
              for r in info["rows"]]
    return lines + [""]
