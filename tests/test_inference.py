"""Inference from Python in three lines: a trained adapter (checkpoint or adapter folder) on its
backbone answers new rows of a task exactly as `parade test` answered them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import ROOT, cli_args

import datamodules as D
from methods.adapter_files import save_adapter
from parade_lightning import load_adapter_model, predict
from parade_lightning.cli import build_cli


def test_checkpoint_and_adapter_folder_answer_new_rows_as_test_did(tmp_path):
    args = cli_args(tmp_path, "--config", str(ROOT / "configs/methods/lora.yaml"),
                    "--trainer.max_steps", "2")
    cli = build_cli(["fit", *args])
    run_dir = Path(cli.trainer.log_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tested = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().split("\n")
              if line]
    examples = cli.datamodule.split_examples("test")
    source = [json.loads(line) for line in
              (tmp_path / "data/rte/validation.jsonl").read_text().splitlines()]
    rows = [{k: source[ex["row"]][k] for k in ("sentence1", "sentence2")} for ex in examples]

    # the three lines of the README
    model = load_adapter_model(metrics["ckpt_path"])
    task = D.RTE()
    answers = predict(model, task, rows)

    assert answers == [row["prediction"] for row in tested]
    assert model.hparams.num_beams == 3 and not model.training
    folder = save_adapter(model.model, tmp_path / "adapter", backbone="tiny-llama")
    again = load_adapter_model(folder, num_beams=3)
    assert predict(again, D.RTE(), rows) == answers
    assert predict(again, task, rows[:1], num_beams=1, max_new_tokens=2)[0] != ""


def test_adapter_folder_without_backbone_says_what_to_pass(tmp_path):
    from methods import IA3
    from parade_lightning import PeftLitModule

    module = PeftLitModule(backbone="tiny-llama", method=IA3())
    folder = save_adapter(module.model, tmp_path / "a")  # no backbone name recorded
    with pytest.raises(ValueError, match="pass backbone="):
        load_adapter_model(folder)
    loaded = load_adapter_model(folder, backbone="tiny-llama")
    assert type(loaded.method).__name__ == "IA3"
