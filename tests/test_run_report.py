"""Runs say what they did (parade_lightning/run_report.py, the CLI's hooks): the warning when
dev is never evaluated, the <method>/<task> log folder, the final summary (dev before training,
best dev, test, weights tested, files); `parade --help` lists sweep; an unknown method
class_path names the file searched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import ROOT, cli_args

from parade_lightning.cli import build_cli, main


def mrpc_data(folder: Path) -> Path:
    for split, n in (("train", 16), ("validation", 8)):
        rows = [{"sentence1": f"The cat {i} sat.", "sentence2": "A cat sat." if i % 2 else
                 "A dog flew.", "label": i % 2, "idx": i} for i in range(n)]
        path = folder / "mrpc" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(json.dumps(r) for r in rows))
    return folder


def test_yaml_task_fit_summary_from_zero_shot_dev_to_test(tmp_path, caplog):
    data = mrpc_data(tmp_path / "data")
    args = [*cli_args(tmp_path, "--config", str(ROOT / "configs/methods/lora.yaml"),
                      "--config", str(ROOT / "configs/tasks/mrpc.yaml"),
                      "--data.data_dir", str(data), "--data.batch_size", "4",
                      "--trainer.max_steps", "4", "--validate_before_fit", "true")]
    with caplog.at_level("INFO"):
        cli = build_cli(["fit", *args])
    run_dir = Path(cli.trainer.log_dir)
    assert run_dir.relative_to(tmp_path / "runs").parts[:2] == ("lora", "mrpc")
    # the YAML task's generation length reaches the module (one value for both)
    assert cli.model.hparams.max_new_tokens == cli.datamodule.max_new_tokens == 5
    summary = cli.run_summary
    assert summary["dev_before"]["step"] == 0 and summary["dev_evaluations"] == 2
    assert summary["dev_best"]["metric"] == "accuracy" and summary["dev_last"]["step"] == 4
    assert summary["test"]["weights"] == summary["best_checkpoint"]
    assert Path(summary["best_checkpoint"]).name.startswith("best-")
    names = {Path(f).name for f in summary["files"]}
    assert {"metrics.json", "predictions.jsonl", "budget.json", "config.yaml"} <= names
    assert summary["tensorboard"] == f"tensorboard --logdir {tmp_path / 'runs'}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert summary["test"]["value"] == metrics["value"] and metrics["task"] == "mrpc"
    text = caplog.text
    assert "Run summary (fit, 4 training steps)" in text and "before training" in text
    assert f"-> test {metrics['value']:.4f}" in text and "metrics.json" in text


def test_no_validation_before_max_steps_is_said(tmp_path, caplog):
    args = cli_args(tmp_path, "--config", str(ROOT / "configs/methods/ia3.yaml"),
                    "--trainer.max_steps", "3", "--trainer.val_check_interval", "20")
    with pytest.warns(UserWarning, match=r"validation never runs: .*val_check_interval is 20 "
                                         r"batches but training stops after max_steps 3"):
        cli = build_cli(["fit", *args])
    assert Path(cli.trainer.log_dir).relative_to(tmp_path / "runs").parts[:2] == ("ia3", "rte")
    summary = cli.run_summary
    assert summary["dev_evaluations"] == 0 and summary["best_checkpoint"] is None
    assert summary["test"]["weights"] is None  # the last weights
    with caplog.at_level("INFO"):
        from parade_lightning.run_report import format_summary
        text = format_summary(summary)
    assert "no dev evaluation ran" in text and "tested with the last weights" in text


def test_zero_shot_test_without_checkpoint(tmp_path):
    cli = build_cli(["test", *cli_args(tmp_path, "--config",
                                       str(ROOT / "configs/methods/lora.yaml"))])
    summary = cli.run_summary
    assert summary["global_step"] == 0 and summary["test"]["weights"] is None
    assert (Path(cli.trainer.log_dir) / "metrics.json").is_file()


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "sweep"):
        assert f"    {name} " in listed, name


def test_unknown_method_class_path_names_the_file_searched(tmp_path, capsys):
    config = tmp_path / "method.yaml"
    config.write_text("model:\n  method:\n    class_path: methods.LoRAA\n")
    import methods

    for args in (["--model.method", "methods.LoRAA"], ["--config", str(config)],
                 ["--model.method.class_path=methods.LoRAA"]):
        with pytest.raises(SystemExit) as err:
            build_cli(["fit", "--config", str(ROOT / "configs/base.yaml"), *args])
        assert err.value.code == 2
        message = capsys.readouterr().err
        assert "'methods' has no 'LoRAA'" in message and methods.__file__ in message


def test_fit_with_max_steps_0_is_a_zero_shot_run(tmp_path):
    """What a sweep entry with `overrides: {trainer.max_steps: 0}` does: no step, a test."""
    cli = build_cli(["fit", *cli_args(tmp_path, "--config", str(ROOT / "configs/methods/lora.yaml"),
                                      "--trainer.max_steps", "0")])
    metrics = json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())
    assert metrics["global_step"] == 0 and cli.run_summary["test"]["weights"] is None


def test_fit_time_is_summed_over_a_resume(tmp_path):
    """metrics.json ``seconds.fit``: Lightning's Timer state travels in last.ckpt, so a resumed
    run reports the time of both attempts (and nothing more: testing the best checkpoint
    reloads a Timer state too)."""
    import time

    import torch

    args = cli_args(tmp_path, "--config", str(ROOT / "configs/methods/ia3.yaml"),
                    "--trainer.max_steps", "2")
    first = build_cli(["fit", *args])
    folder = Path(first.trainer.log_dir) / "checkpoints"
    last = folder / "last.ckpt"
    for ckpt in folder.glob("*.ckpt"):  # last.ckpt and best-step=2.ckpt, a test candidate
        state = torch.load(ckpt, weights_only=True)
        assert state["callbacks"]["Timer"]["time_elapsed"]["train"] > 0
        state["callbacks"]["Timer"]["time_elapsed"]["train"] = 1000.0  # a long attempt 1
        torch.save(state, ckpt)
    began = time.monotonic()
    second = build_cli(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path", str(last)])
    took = time.monotonic() - began
    metrics = json.loads((Path(second.trainer.log_dir) / "metrics.json").read_text())
    assert metrics["global_step"] == 4
    assert 1000.0 < metrics["seconds"]["fit"] < 1000.0 + took
    assert 0 < metrics["seconds"]["test"] < took
    # an attempt that resumes at max_steps (killed during its test) trains no step, and
    # still reports the earlier attempts' fit time, not none
    third = build_cli(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path",
                       str(Path(second.trainer.log_dir) / "checkpoints" / "last.ckpt")])
    again = json.loads((Path(third.trainer.log_dir) / "metrics.json").read_text())
    assert again["global_step"] == 4
    assert again["seconds"]["fit"] == pytest.approx(metrics["seconds"]["fit"], abs=1.0)


@pytest.mark.parametrize(("fast", "extra", "said"), [
    (False, ("--trainer.precision", "bf16-mixed"), "trainer.precision is bf16-mixed, but"),
    (False, ("--model.backbone_dtype", "bfloat16"), "model.backbone_dtype is bfloat16, but"),
    (False, (), None),  # fp32 on the slow CPU: nothing to say
    (True, ("--trainer.precision", "bf16-mixed"), None),  # a CPU with a bf16 path
], ids=["bf16-mixed", "bf16-weights", "fp32", "native-bf16"])
def test_bf16_on_a_cpu_without_a_bf16_path_is_said(tmp_path, monkeypatch, fast, extra, said):
    import warnings

    from parade_lightning import run_report

    monkeypatch.setattr(run_report, "cpu_has_fast_bf16", lambda: fast)
    args = cli_args(tmp_path, "--config", str(ROOT / "configs/methods/ia3.yaml"),
                    "--trainer.max_steps", "2", "--test_after_fit", "false", *extra)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_cli(["fit", *args])
    found = [str(w.message) for w in caught if "no native bf16 path" in str(w.message)]
    if said is None:
        assert not found
    else:
        assert len(found) == 1 and found[0].startswith(said)
        assert "--trainer.precision 32-true" in found[0]


def test_the_bf16_probe_answers_on_this_machine():
    from parade_lightning.run_report import cpu_has_fast_bf16

    assert isinstance(cpu_has_fast_bf16(), bool)
