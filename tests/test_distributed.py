"""Rows gathered across processes (two CPU processes over gloo) and rank-safe output folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks._io import output_dir
from parade_lightning.distributed import gather_rows


def _gather(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        # a distributed sampler's shares of 5 rows: rank 0 gets 0, 2, 4; rank 1 gets 1, 3, 0
        share = [{"index": i, "rank": rank} for i in ([0, 2, 4] if rank == 0 else [1, 3, 0])]
        rows = gather_rows(SimpleNamespace(world_size=world), share)
        Path(out, f"rank{rank}.json").write_text(json.dumps(rows))
    finally:
        dist.destroy_process_group()


def test_gather_rows_merges_shares_in_index_order(tmp_path):
    port = 29500 + os.getpid() % 1000
    mp.spawn(_gather, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert seen[0] == seen[1]  # every process gets everything
    assert [row["index"] for row in seen[0]] == [0, 1, 2, 3, 4]  # the repeated row 0 once


def test_gather_rows_single_process_is_identity():
    rows = [{"index": 3}, {"index": 1}]
    assert gather_rows(SimpleNamespace(world_size=1), rows) is rows


def test_output_dir_is_the_trainers_log_dir(tmp_path):
    logged = L.Trainer(logger=TensorBoardLogger(tmp_path / "tb", name="x"),
                       default_root_dir=tmp_path)
    assert output_dir(logged) == Path(logged.log_dir) and output_dir(logged).is_dir()
    bare = L.Trainer(logger=False, default_root_dir=tmp_path / "root")
    assert output_dir(bare) == Path(bare.log_dir)
    assert output_dir(bare, str(tmp_path / "here")) == tmp_path / "here"
