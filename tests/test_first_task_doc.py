"""docs/first_task.md matches the code: its task YAML builds and sets up on SST-2-shaped rows,
and the mistake it shows is reported as the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from datamodule_fixtures import sst2_rows, write_jsonl

import datamodules as D

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs/first_task.md").read_text()
pytestmark = pytest.mark.usefixtures("offline_data")


def page_task(tmp_path: Path, **changes) -> Path:
    block = re.search(r"`my_tasks/sentiment.yaml`:\n\n```yaml\n(.*?)```", PAGE, re.S).group(1)
    config = yaml.safe_load(block)
    config["data"]["init_args"].update(changes)
    path = tmp_path / "sentiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_pages_task_sets_up_and_answers_prompts(tmp_path, tok):
    write_jsonl(tmp_path, "sst2", "train", sst2_rows(230))
    write_jsonl(tmp_path, "sst2", "validation", sst2_rows(10))
    dm = D.DeclarativeTask.from_yaml(page_task(tmp_path), data_dir=str(tmp_path),
                                     cache_dir=str(tmp_path / "cache"))
    dm.tokenizer = tok
    dm.setup("fit")
    dm.setup("test")
    assert [len(dm.split_examples(s)) for s in ("train", "dev", "test")] == [30, 200, 10]
    assert dm.prompt({"sentence": "a warm film"}).endswith(
        "Review: a warm film\nIs this review positive or negative?[/INST]")
    assert "python" in PAGE and "load_adapter_model" in PAGE and "predict(model, task" in PAGE


def test_the_pages_mistake_is_reported_as_shown(tmp_path, tok):
    write_jsonl(tmp_path, "sst2", "train", sst2_rows(230))
    write_jsonl(tmp_path, "sst2", "validation", sst2_rows(10))
    path = page_task(tmp_path, template="Review: {sentense}\nIs this review positive?")
    dm = D.DeclarativeTask.from_yaml(path, data_dir=str(tmp_path))
    dm.tokenizer = tok
    with pytest.raises(D.TaskDefinitionError) as err:
        dm.setup("fit")
    assert "template placeholder(s) {sentense} name no field of" in str(err.value)
    assert "(its fields: idx, label, sentence). Fix `template`" in str(err.value)
