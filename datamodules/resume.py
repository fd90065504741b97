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

Under DDP every process draws its own share of the epoch's order (``order[rank::world]``,
padded like ``DistributedSampler`` so all shares are equally long). The sampler *is* a
``DistributedSampler``, so Lightning keeps it instead of putting its own (which would restart
the epoch from its first batch on resume); every process trains the same number of batches,
so the one saved position is each process's. A resume with another number of processes
continues after as many examples as were trained in total (not the same rows, since the
shares differ).

With ``lengths`` the order is grouped by length (``data.group_by_length``, the Hugging Face
Trainer's option of that name): the seeded permutation is cut into windows of
``megabatch`` global batches, each window is sorted by length and cut into global batches
(``batch_size`` × processes examples), and those batches are shuffled within the window (seeded
too). Each window keeps the rows the plain order has there, so the first ``k`` windows train on
exactly the rows they would without grouping; a batch's rows have similar lengths, so far less
of it is padding. The order is still a function of ``(seed, epoch)``, so resuming is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

Position = Callable[[], "tuple[int, int] | None"]  # -> (epoch, batches trained in it)


def process_share() -> tuple[int, int]:
    """``(number of processes, this process's rank)`` of the running process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def train_state(where: tuple[int, int] | None, batch_size: int) -> dict[str, int]:
    """The saved position: epoch, batches trained in it (by each process), their size and the
    number of processes ({} when unknown)."""
    if where is None:
        return {}
    return {"epoch": where[0], "batches": where[1], "batch_size": batch_size,
            "world": process_share()[0]}


class EpochShuffleSampler(DistributedSampler):
    """Random order seeded by ``(seed, epoch)``; can start one epoch part-way (a resume).

    Args:
        size: number of examples.
        seed: the datamodule's seed.
        num_replicas: number of processes sharing the epoch (1: all of it).
        rank: this process's share (``order[rank::num_replicas]``, see the module docstring).
    """

    def __init__(self, size: int, seed: int, num_replicas: int = 1, rank: int = 0,
                 lengths: list[int] | None = None, batch_size: int = 1,
                 megabatch: int = 50) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=False,
                         seed=seed)
        if lengths is not None and len(lengths) != size:
            raise ValueError(f"lengths has {len(lengths)} entries for {size} examples")
        self.size, self.seed, self.epoch = size, seed, 0
        self.lengths = lengths
        self.group = batch_size * num_replicas  # one global batch: every process's batch i
        self.window = megabatch * self.group
        self.share = math.ceil(size / num_replicas) if size else 0  # examples per process
        self._resume: tuple[int, int] | None = None  # (epoch, first position in the share)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self._resume is not None and self._resume[0] != epoch:
            self._resume = None  # the resumed epoch is over

    def resume_at(self, epoch: int, position: int) -> None:
        """Make the next pass over ``epoch`` start at ``position`` of this process's share."""
        self._resume = (epoch, position)

    def order(self, epoch: int) -> list[int]:
        """The whole epoch's order (every process's share interleaved)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.lengths is None:
            return order
        grouped: list[int] = []
        for start in range(0, len(order), self.window):
            window = sorted(order[start:start + self.window], key=lambda i: -self.lengths[i])
            batches = [window[i:i + self.group] for i in range(0, len(window), self.group)]
            for k in torch.randperm(len(batches), generator=generator).tolist():
                grouped += batches[k]
        return grouped

    def shard(self, epoch: int) -> list[int]:
        """This process's share of the epoch, padded by repeating the order's head."""
        order = self.order(epoch)
        total = self.share * self.num_replicas
        if total > len(order) and order:
            order = (order * math.ceil(total / len(order)))[:total]
        return order[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        # Every pass over the resumed epoch starts at the saved position (Lightning builds an
        # iterator when it sets up the data and another one when the epoch starts).
        resume = self._resume
        start = resume[1] if resume is not None and resume[0] == self.epoch else 0
        yield from self.shard(self.epoch)[start:]

    def __len__(self) -> int:
        return self.share


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position Lightning saves in checkpoints and restores on resume.

    ``position`` (set by the datamodule) returns the trainer's ``(epoch, batches trained)``;
    without it, or when the sampler was replaced, the state is empty and a resume starts the
    epoch from its first batch, as a plain ``DataLoader`` would.
    """

    position: Position | None = None

    def state_dict(self) -> dict[str, Any]:
        if self.position is None or not isinstance(self.sampler, EpochShuffleSampler):
            return {}
        return train_state(self.position(), self.batch_size)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and isinstance(self.sampler, EpochShuffleSampler):
            # Examples consumed, so a changed batch size still resumes at the right example
            # (and a changed number of processes after as many examples in total).
            consumed = state["batches"] * state["batch_size"] * state.get("world", 1)
            self.sampler.resume_at(state["epoch"], consumed // self.sampler.num_replicas)
