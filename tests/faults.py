"""Fault injection for the sweep tests: ``parade fit`` that fails or dies on purpose.

The sweep runner starts ``python -m faults <kind> fit …`` instead of
``python -m parade_lightning.cli fit …`` for runs named in ``$PARADE_SWEEP_LAUNCH`` (the
runner's launch hook, ``{"<run glob>": "faults <kind>"}``, with this folder on PYTHONPATH); the
run's arguments, config and directory are unchanged, so what happens next is what happens after a
real failure. Kinds:

* ``fail``: exits with an error before training starts (a broken run).
* ``crash``: dies abruptly (``os._exit(137)``, as after an out-of-memory kill) right after the
  first ``last.ckpt`` is written, so the run is left with a checkpoint and no metrics.
* ``kill_sweep``: as ``crash``, but first SIGKILLs its parent, the sweep process (a sweep
  killed in the middle of a run).
* ``kill_train``: SIGKILLs itself when training step ``$PARADE_FAULT_STEP`` (default 5) is
  about to start (kill -9 during training).
* ``kill_save``: SIGKILLs itself half-way through writing the second ``last.ckpt`` (kill -9
  during a checkpoint save).
* ``record``: every process appends ``{"step", "rank", "index"}`` of each training batch to
  ``$PARADE_FAULT_RECORD/rank<r>.jsonl``; with ``$PARADE_FAULT_STEP`` set, every process then
  raises when that step is about to start (a multi-process run that crashes mid-epoch).

``tests/fault_suite.py`` (``make faults``) drives the last two end to end.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

KINDS = ("fail", "crash", "kill_sweep", "kill_train", "kill_save", "record")


def _die_after_last_checkpoint(kill_parent: bool) -> None:
    from lightning.pytorch import Trainer

    original = Trainer.save_checkpoint

    def save_checkpoint(self: Trainer, filepath, *args, **kwargs) -> None:
        original(self, filepath, *args, **kwargs)
        if Path(str(filepath)).name == "last.ckpt":
            if kill_parent:
                os.kill(os.getppid(), signal.SIGKILL)
            os._exit(137)

    Trainer.save_checkpoint = save_checkpoint


def _kill_at_step(step: int) -> None:
    from parade_lightning.lit_module import PeftLitModule

    original = PeftLitModule.training_step

    def training_step(self, batch, batch_idx):
        if self.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, batch, batch_idx)

    PeftLitModule.training_step = training_step


def _kill_inside_second_last_save() -> None:
    import torch

    original, saves = torch.save, []

    def save(obj, handle, *args, **kwargs):
        name = getattr(handle, "name", str(handle))
        if ".last.ckpt.partial-" in str(name):
            saves.append(name)
            if len(saves) == 2:  # the first last.ckpt is on disk; cut the second one
                original(obj, handle, *args, **kwargs)
                handle.flush()
                handle.truncate(handle.tell() // 2)
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return original(obj, handle, *args, **kwargs)

    torch.save = save


def _record_batches(folder: Path, crash_step: int | None) -> None:
    import json

    from parade_lightning.lit_module import PeftLitModule

    original = PeftLitModule.training_step

    def training_step(self, batch, batch_idx):
        if self.global_step == crash_step:
            raise RuntimeError(f"injected crash at step {crash_step}")
        line = {"step": self.global_step, "rank": self.global_rank, "index": batch["index"]}
        with open(folder / f"rank{self.global_rank}.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")
        return original(self, batch, batch_idx)

    PeftLitModule.training_step = training_step


def main(argv: list[str]) -> None:
    """``<kind> <parade arguments…>``."""
    if not argv or argv[0] not in KINDS:
        raise SystemExit(f"usage: python -m {__name__} {{{','.join(KINDS)}}} fit …")
    kind, args = argv[0], argv[1:]
    if kind == "fail":
        raise SystemExit(f"injected failure ({kind}) for: parade {' '.join(args[:1])} …")
    if kind == "kill_train":
        _kill_at_step(int(os.environ.get("PARADE_FAULT_STEP", "5")))
    elif kind == "kill_save":
        _kill_inside_second_last_save()
    elif kind == "record":
        step = os.environ.get("PARADE_FAULT_STEP")
        _record_batches(Path(os.environ["PARADE_FAULT_RECORD"]), int(step) if step else None)
    else:
        _die_after_last_checkpoint(kill_parent=kind == "kill_sweep")
    from parade_lightning.cli import main as parade_main

    parade_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
