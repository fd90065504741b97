"""A training loader that resumes mid-epoch exactly where an interrupted run stopped.

Lightning checkpoints a dataloader that follows its ``_Stateful`` protocol (``state_dict`` /
``load_state_dict``) and restores it before the resumed epoch starts. Without that, a run
resumed from a mid-epoch checkpoint replays the first batches of the epoch in a new order;
with it, ``parade fit --ckpt_path last`` (and ``parade sweep`` after a crash) sees the very
batches the uninterrupted run would have seen.

The shuffle order of epoch ``e`` is a function of ``(seed, e)`` alone (not of how many epochs
this process has iterated); Lightning calls :meth:`EpochShuffleSampler.set_epoch` at every epoch
start. The position is read from the trainer when the checkpoint is written: the number of
batches already trained in the epoch (``batch_progress.current.processed``), which, unlike a
count of the batches drawn from the iterator, does not include the batch Lightning prefetches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

Position = Callable[[], "tuple[int, int] | None"]  # -> (epoch, batches trained in it)


def train_state(where: tuple[int, int] | None, batch_size: int) -> dict[str, int]:
    """The saved position: epoch, batches trained in it and their size ({} when unknown)."""
    if where is None:
        return {}
    return {"epoch": where[0], "batches": where[1], "batch_size": batch_size}


class EpochShuffleSampler(Sampler[int]):
    """Random order seeded by ``(seed, epoch)``; can start one epoch part-way (a resume).

    Args:
        size: number of examples.
        seed: the datamodule's seed.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self._resume: tuple[int, int] | None = None  # (epoch, first example position)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self._resume is not None and self._resume[0] != epoch:
            self._resume = None  # the resumed epoch is over

    def resume_at(self, epoch: int, position: int) -> None:
        """Make the next pass over ``epoch`` start at ``position`` of that epoch's order."""
        self._resume = (epoch, position)

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        # Every pass over the resumed epoch starts at the saved position (Lightning builds an
        # iterator when it sets up the data and another one when the epoch starts).
        resume = self._resume
        start = resume[1] if resume is not None and resume[0] == self.epoch else 0
        yield from self.order(self.epoch)[start:]

    def __len__(self) -> int:
        return self.size


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position Lightning saves in checkpoints and restores on resume.

    ``position`` (set by the datamodule) returns the trainer's ``(epoch, batches trained)``;
    without it, or when Lightning has replaced the sampler (e.g. a ``DistributedSampler``
    under DDP), the state is empty and a resume starts the epoch from its first batch, as a
    plain ``DataLoader`` would.
    """

    position: Position | None = None

    def state_dict(self) -> dict[str, Any]:
        if self.position is None or not isinstance(self.sampler, EpochShuffleSampler):
            return {}
        return train_state(self.position(), self.batch_size)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and isinstance(self.sampler, EpochShuffleSampler):
            # Examples consumed, so a changed batch size still resumes at the right example.
            self.sampler.resume_at(state["epoch"], state["batches"] * state["batch_size"])
