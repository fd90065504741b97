"""A real Lightning DDP fit: two CPU processes over gloo through ``parade fit``, end to end
(fit, dev evaluation, test, predictions gathered and written once), then a crash mid-epoch
and ``--ckpt_path last``: every process continues at its next unseen batch and the weights
equal the uninterrupted run's.

The runs are subprocesses (Lightning's DDP launcher starts the second process by re-running
the command), so this is the suite's slowest test (about a minute on two cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch
from test_cli import ROOT, cli_args
from torch.utils.data import DataLoader

from datamodules.resume import EpochShuffleSampler
from methods.adapter_files import load_checkpoint_file

DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


def fit(work: Path, args: list[str], crash_step: int | None = None) -> subprocess.CompletedProcess:
    record = work / f"record{'-crash' if crash_step else ''}{'-resume' if 'last' in args else ''}"
    record.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "PARADE_FAULT_RECORD": str(record), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PARADE_FAULT_STEP", None)
    if crash_step is not None:
        env["PARADE_FAULT_STEP"] = str(crash_step)
    return subprocess.run([sys.executable, "-m", "faults", "record", "fit", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


def batches(work: Path, name: str) -> dict[tuple[int, int], list[int]]:
    """``(rank, step) -> example indices`` of every training batch of a run."""
    seen = {}
    for rank in (0, 1):
        for line in (work / name / f"rank{rank}.jsonl").read_text().splitlines():
            row = json.loads(line)
            seen[(row["rank"], row["step"])] = row["index"]
    return seen


def test_ddp_fit_test_and_mid_epoch_resume(tmp_path):
    # 24 rows, batch 4, two processes: 3 batches per process and epoch; 7 steps cross 2 epochs
    straight = tmp_path / "straight"
    args = cli_args(straight, *DDP, "--trainer.max_steps", "7", "--test_after_fit", "true")
    done = fit(straight, args)
    assert done.returncode == 0, done.stderr[-3000:]
    run = straight / "runs" / "parade" / "rte" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert metrics["num_examples"] == 6 and [r["index"] for r in rows] == list(range(6))
    assert not list(straight.glob("runs/parade/rte/version_1"))  # one run folder, written once
    reference = batches(straight, "record")
    # each process trains its own share; together they cover the epoch once
    epoch0 = sorted(i for step in range(3) for rank in (0, 1) for i in reference[(rank, step)])
    assert epoch0 == list(range(24))

    crashed = tmp_path / "crashed"
    args = cli_args(crashed, *DDP, "--trainer.max_steps", "7", "--test_after_fit", "false")
    assert fit(crashed, args, crash_step=5).returncode != 0  # last.ckpt: step 4, mid-epoch 1
    ckpt = crashed / "runs" / "parade" / "rte" / "version_0" / "checkpoints" / "last.ckpt"
    assert load_checkpoint_file(ckpt)["global_step"] == 4
    done = fit(crashed, [*args, "--ckpt_path", "last"])
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = batches(crashed, "record-resume")
    assert sorted(resumed) == [(r, s) for r in (0, 1) for s in (4, 5, 6)]
    assert all(resumed[key] == reference[key] for key in resumed)  # the next unseen batches
    ours = load_checkpoint_file(ckpt)["state_dict"]
    theirs = load_checkpoint_file(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_shuffle_sampler_shards_and_lightning_keeps_it():
    shards = [EpochShuffleSampler(10, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    order = shards[0].order(1)
    for rank, sampler in enumerate(shards):
        sampler.set_epoch(1)
        assert len(sampler) == 5 and list(sampler) == order[rank::2]
    odd = [EpochShuffleSampler(5, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    drawn = list(odd[0]) + list(odd[1])  # padded like DistributedSampler: one row twice
    assert [len(s) for s in odd] == [3, 3] and len(drawn) == 6 and set(drawn) == set(range(5))
    lengths = list(range(10))  # grouped by length: each step's batches share one group
    grouped = [EpochShuffleSampler(10, seed=3, num_replicas=2, rank=r, lengths=lengths,
                                   batch_size=2) for r in (0, 1)]
    whole = grouped[0].order(0)
    for step in range(2):
        rows = [i for g in grouped for i in list(g)[2 * step:2 * step + 2]]
        assert sorted(rows) == sorted(whole[4 * step:4 * step + 4])
    shards[1].resume_at(1, 2)  # two examples of this process's share already trained
    assert list(shards[1]) == order[1::2][2:]
    trainer = L.Trainer(strategy="ddp", devices=2, accelerator="cpu", logger=False)
    ours = DataLoader(range(10), sampler=shards[0])
    assert not trainer._data_connector._requires_distributed_sampler(ours)
    assert trainer._data_connector._requires_distributed_sampler(DataLoader(range(10)))
