"""YAML-only check: every ``configs/tasks/*.yaml`` parses into its task datamodule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser

import datamodules as D

TASK_DIR = Path(__file__).resolve().parents[1] / "configs" / "tasks"
YAMLS = sorted(TASK_DIR.glob("*.yaml"))


def test_every_task_has_a_yaml():
    assert {p.stem for p in YAMLS} == set(D.TASKS)


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_task_yaml_parses(path):
    raw = yaml.safe_load(path.read_text())
    assert set(raw) == {"data"}
    assert "backbone" not in raw["data"].get("init_args", {})  # linked from model.backbone
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(D.TaskDataModule, "data")
    cfg = parser.parse_path(str(path))
    dm = parser.instantiate(cfg).data
    assert type(dm) is D.TASKS[path.stem]
    assert dm.hparams.backbone == "smollm2-135m"
    assert dm.hparams.max_length == 2048 and dm.hparams.chat_style == "llama2"
