"""Where callbacks write, and how they write and read JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger


def output_dir(trainer: L.Trainer, override: str | None = None) -> Path:
    """``override``, else the run's log folder (what ``trainer.log_dir`` names), created.

    ``trainer.log_dir`` broadcasts from rank 0, so it stalls when only rank 0 asks (inside a
    ``rank_zero_only`` hook); the first logger's folder is the same path without collectives.
    """
    if override:
        out = Path(override)
    elif trainer.loggers:
        logger = trainer.loggers[0]
        use_log_dir = isinstance(logger, (TensorBoardLogger, CSVLogger))
        out = Path(logger.log_dir if use_log_dir else logger.save_dir)
    else:
        out = Path(trainer.default_root_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
