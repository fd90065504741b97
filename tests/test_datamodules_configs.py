"""YAML-only check: every ``configs/tasks/*.yaml`` parses into its task datamodule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser

import datamodules as D

TASK_DIR = Path(__file__).resolve().parents[1] / "configs" / "tasks"
YAMLS = sorted(TASK_DIR.glob("*.yaml"))


def _declarative(path: Path) -> bool:
    """A task declared in YAML only (datamodules.DeclarativeTask), not a Python class."""
    return yaml.safe_load(path.read_text())["data"]["class_path"].endswith("DeclarativeTask")


def test_every_task_has_a_yaml():
    assert {p.stem for p in YAMLS if not _declarative(p)} == set(D.TASKS)
    assert {p.stem for p in YAMLS if _declarative(p)} == {"mrpc", "samsum"}


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_task_yaml_parses(path):
    raw = yaml.safe_load(path.read_text())
    assert set(raw) <= {"data", "trainer"}
    assert "backbone" not in raw["data"].get("init_args", {})  # linked from model.backbone
    if "trainer" in raw:  # batch-128 tasks: accumulation and the eval period in micro-batches
        accumulate = raw["trainer"]["accumulate_grad_batches"]
        assert raw["trainer"]["val_check_interval"] == 200 * accumulate
        micro = raw["data"]["init_args"]["batch_size"]
        assert accumulate * micro == D.TASKS[path.stem].paper_batch_size
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(D.TaskDataModule, "data")
    cfg = parser.parse_object({"data": raw["data"]})
    dm = parser.instantiate(cfg).data
    if _declarative(path):
        assert isinstance(dm, D.DeclarativeTask) and dm.task == path.stem
    else:
        assert type(dm) is D.TASKS[path.stem]
    assert dm.hparams.backbone == "smollm2-135m"
    assert dm.hparams.max_length == 2048 and dm.hparams.chat_style == "llama2"
