"""Rows produced on every process of a multi-process run, brought together."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch.distributed as dist


def gather_rows(trainer: L.Trainer, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every process's rows, on every process (one process: ``rows`` as they are).

    Under DDP each process tests or predicts its own share of the split, and the distributed
    sampler repeats a few rows to even the shares out: rows are merged in ``index`` order and
    a repeated index is kept once.
    """
    if trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return rows
    shares: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(shares, rows)
    merged = {row["index"]: row for share in shares for row in share or []}
    return [merged[i] for i in sorted(merged)]
