"""Checkpoint files that survive a crash and cannot run code when read back.

:class:`AtomicCheckpointIO` is the checkpoint IO plugin ``parade`` installs in every Trainer
it builds (see :mod:`parade_lightning.cli`):

* save: the checkpoint is written to a hidden temporary file *beside* the target (same folder,
  so the same filesystem whatever ``TMPDIR`` is), flushed and ``fsync``-ed, then renamed over
  the target with ``os.replace`` (atomic on POSIX) and the folder is ``fsync``-ed. A run killed
  at any moment leaves either the previous ``last.ckpt`` or the new one, never a cut file;
  the temporary file of a killed save is removed by the next save to that folder, and a save
  that fails (disk full, interrupt) removes its own.
* load: :func:`methods.adapter_files.load_checkpoint_file` (``weights_only=True``): a file
  holding arbitrary Python objects is refused with how to convert a trusted one, and an empty
  or cut file gets ``not a checkpoint: <path> (truncated?)``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from methods.adapter_files import load_checkpoint_file

PARTIAL = ".partial-"
"""Infix of the temporary files: ``.<name>.partial-<pid>``."""


def partial_files(target: str | Path) -> list[Path]:
    """Temporary files of unfinished saves to ``target`` (left by killed processes)."""
    target = Path(target)
    return sorted(target.parent.glob(f".{target.name}{PARTIAL}*"))


def atomic_torch_save(obj: Any, target: str | Path) -> Path:
    """``torch.save`` to ``target`` atomically (temporary file beside it, fsync, rename)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in partial_files(target):  # from saves that were killed before their rename
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    partial = target.with_name(f".{target.name}{PARTIAL}{os.getpid()}")
    try:
        with open(partial, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself reaches the disk
    finally:
        os.close(folder)
    return target


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO: atomic local saves, ``weights_only`` loads (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote: fsspec's way
            return
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Callable | Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(
                f"{path}: refusing weights_only=False; parade only reads checkpoints holding "
                "tensors and plain data (see methods.adapter_files.load_checkpoint_file)"
            )
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only=True)
        return load_checkpoint_file(path, map_location=map_location or "cpu")
