"""Resume never silently changes a run: one error listing every contradiction, before the run
folder is touched; ``--ckpt_path last`` with nothing to resume is an error unless asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import ROOT, cli_args

from parade_lightning.checkpoint_io import AtomicCheckpointIO
from parade_lightning.cli import build_cli
from parade_lightning.resume_check import ResumeMismatchError


@pytest.fixture()
def first_run(tmp_path):
    args = cli_args(tmp_path, "--config", str(ROOT / "configs/methods/lora.yaml"),
                    "--test_after_fit", "false", "--trainer.max_steps", "2")
    cli = build_cli(["fit", *args])
    run_dir = Path(cli.trainer.log_dir)
    return args, run_dir, run_dir / "checkpoints" / "last.ckpt"


def test_parade_fit_uses_the_atomic_checkpoint_io(tmp_path):
    cli = build_cli(cli_args(tmp_path), run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    # with or without a subcommand, a logger with `name: null` logs under <method>/<task>
    assert cli.trainer.logger.name == "parade/rte"


def test_changed_lr_and_rank_with_last_are_refused_in_one_message(first_run):
    args, run_dir, _ = first_run
    saved = (run_dir / "config.yaml").read_bytes()
    folders = sorted(p.name for p in run_dir.parent.iterdir())
    with pytest.raises(ResumeMismatchError) as error:
        build_cli(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path", "last",
                   "--model.lr", "0.001", "--model.method.init_args.r", "8"])
    message = str(error.value)
    assert "model.lr: checkpoint 0.0001, this command 0.001" in message
    assert "model.method.init_args.r: checkpoint 4, this command 8" in message
    assert "max_steps" not in message  # not fixed by the checkpoint
    assert (run_dir / "config.yaml").read_bytes() == saved  # nothing rewritten ...
    assert sorted(p.name for p in run_dir.parent.iterdir()) == folders  # ... or created


def test_changed_method_with_an_explicit_checkpoint_is_refused(first_run):
    args, _, last = first_run
    with pytest.raises(ResumeMismatchError,
                       match=r"model\.method\.class_path: checkpoint 'methods\.lora\.LoRA', "
                             r"this command 'methods\.ia3\.IA3'"):
        build_cli(["fit", *args, "--model.method", "IA3", "--ckpt_path", str(last)])


def test_changed_task_setting_is_refused(first_run):
    args, _, last = first_run
    with pytest.raises(ResumeMismatchError, match=r"data\.max_length: checkpoint 2048"):
        build_cli(["fit", *args, "--data.init_args.max_length", "64", "--ckpt_path", str(last)])


def test_settings_that_do_not_change_training_may_change(first_run):
    args, _, _ = first_run
    cli = build_cli(["fit", *args, "--trainer.max_steps", "3", "--ckpt_path", "last",
                     "--model.num_beams", "1", "--data.init_args.eval_batch_size", "2"])
    assert cli.trainer.global_step == 3


def test_last_with_nothing_to_resume_is_an_error_unless_fresh_start_is_allowed(tmp_path):
    args = cli_args(tmp_path, "--test_after_fit", "false", "--trainer.max_steps", "1")
    with pytest.raises(FileNotFoundError, match=r"--ckpt_path last: nothing to resume: no .*"
                                                r"last\.ckpt.*--allow_fresh_start true"):
        build_cli(["fit", *args, "--ckpt_path", "last"])
    assert not (tmp_path / "runs").exists()
    cli = build_cli(["fit", *args, "--ckpt_path", "last", "--allow_fresh_start", "true"])
    assert cli.trainer.global_step == 1


def test_a_truncated_checkpoint_fails_before_the_run_starts(first_run, tmp_path):
    args, _, last = first_run
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"not a checkpoint: {cut} \(truncated\?\)"):
        build_cli(["fit", *args, "--ckpt_path", str(cut)])


def test_predict_with_a_checkpoint_of_another_method_is_refused(first_run):
    args, run_dir, last = first_run
    with pytest.raises(ResumeMismatchError,
                       match=rf"(?s)cannot load {last}: .*model\.method\.class_path: checkpoint "
                             rf"'methods\.lora\.LoRA', this command 'methods\.ia3\.IA3'.*"
                             rf"--config {run_dir / 'config.yaml'}"):
        build_cli(["predict", *args, "--model.method", "IA3", "--ckpt_path", str(last)])
