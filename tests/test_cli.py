"""End to end through the `parade` CLI on a tiny model and a tiny RTE fixture."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from parade_lightning import PeftLitModule, lit_module
from parade_lightning.cli import build_cli

ROOT = Path(__file__).resolve().parents[1]


def write_rte(folder: Path, n_train: int = 24, n_val: int = 12) -> Path:
    (folder / "rte").mkdir(parents=True)
    for split, n in (("train", n_train), ("validation", n_val)):
        rows = [{"sentence1": f"The cat {i} sat on the mat.",
                 "sentence2": "A cat sat." if i % 2 == 0 else "A dog flew.",
                 "label": i % 2, "idx": i} for i in range(n)]
        (folder / "rte" / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return folder


def cli_args(tmp_path: Path, *extra: str) -> list[str]:
    data = write_rte(tmp_path / "data")
    return [
        "--config", str(ROOT / "configs/base.yaml"),
        "--config", str(ROOT / "configs/tasks/rte.yaml"),
        "--model.backbone", "tiny-llama", "--data.data_dir", str(data),
        "--data.batch_size", "4", "--data.cache_dir", str(tmp_path / "cache"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "40",
        "--trainer.val_check_interval", "2", "--trainer.log_every_n_steps", "1", *extra,
    ]


def scalars(run_dir: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for event_file in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            found.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
        for tag in acc.Tags().get("tensors", []):
            found.setdefault(tag, []).append(0.0)
    return found


def _accumulators(run_dir: Path) -> list[EventAccumulator]:
    out = []
    for event_file in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        out.append(acc)
    return out


def image_tags(run_dir: Path) -> set[str]:
    """Tags of the images in the run's event files."""
    return {tag for acc in _accumulators(run_dir) for tag in acc.Tags()["images"]}


def hparams_tags(run_dir: Path) -> set[str]:
    """Tags of TensorBoard's HPARAMS plugin in the run's event files."""
    found: set[str] = set()
    for acc in _accumulators(run_dir):
        with contextlib.suppress(KeyError):  # KeyError: no HPARAMS entry in this file
            found.update(acc.PluginTagToContent("hparams"))
    return found


@pytest.mark.parametrize("method", ["parade", "lora", "ia3"])
def test_fit_early_stops_keeps_best_and_tests(tmp_path, method):
    # min_delta larger than any possible improvement: the 2nd evaluation counts as "no better",
    # so patience 1 stops training deterministically after 2 evaluations (4 steps).
    callbacks = yaml.safe_load((ROOT / "configs/base.yaml").read_text())["trainer"]["callbacks"]
    callbacks[0]["init_args"].update(patience=1, min_delta=100.0)
    assert "init_args" not in callbacks[-1]  # ParadeDiagnostics logs every log_every_n_steps
    stop = tmp_path / "stop.yaml"
    stop.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    args = ["fit", *cli_args(tmp_path, "--config", str(ROOT / f"configs/methods/{method}.yaml"),
                             "--config", str(stop))]
    cli = build_cli(args)
    assert cli.trainer.global_step == 4  # stopped early, well before max_steps=40
    run_dir = Path(cli.trainer.log_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == "rte" and metrics["metric"] == "accuracy"
    assert 0.0 <= metrics["value"] <= 1.0 and metrics["num_examples"] == 6
    assert Path(metrics["ckpt_path"]).name.startswith("best-")
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {"prompt", "prediction", "gold", "correct"} <= set(rows[0])
    budget = json.loads((run_dir / "budget.json").read_text())
    assert budget["trainable"] == metrics["trainable_parameters"] > 0
    tags = scalars(run_dir)
    for tag in ("train/loss", "train/lr", "val/loss", "val/accuracy", "test/accuracy",
                "budget/trainable"):
        assert tag in tags, (tag, sorted(tags))
    assert "_hparams_/session_start_info" in hparams_tags(run_dir) and "hp_metric" not in tags
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["budget/trainable"] == budget["trainable"] and "lr" in hparams
    if method == "parade":
        assert "parade/l_q_mean" in tags and "parade/pool_entropy" in tags
    # callbacks.PoolerAttentionMaps (configs/base.yaml): PARADE's pooler maps at dev evaluation
    expected = {"val/pooler_map_0", "val/pooler_map_1"} if method == "parade" else set()
    assert image_tags(run_dir) == expected
    ckpt = torch.load(metrics["ckpt_path"], weights_only=True)
    assert all(k.startswith("model.") for k in ckpt["state_dict"])
    assert not any("embed_tokens" in k for k in ckpt["state_dict"])  # no frozen backbone
    restored = PeftLitModule.load_from_checkpoint(metrics["ckpt_path"])
    assert restored.method.config() == cli.model.method.config()


def test_resume_with_ckpt_path_last(tmp_path):
    args = cli_args(tmp_path, "--config", str(ROOT / "configs/methods/lora.yaml"),
                    "--test_after_fit", "false", "--trainer.max_steps", "4")
    first = build_cli(["fit", *args])
    assert first.trainer.global_step == 4
    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    second = build_cli(["fit", *args, "--trainer.max_steps", "6", "--ckpt_path", str(last)])
    assert second.trainer.global_step == 6
    third = build_cli(["fit", *args, "--trainer.max_steps", "8", "--ckpt_path", "last"])
    assert third.trainer.global_step == 8  # `last` found in the newest run folder
    assert third.trainer.log_dir == second.trainer.log_dir


def test_dev_generation_goes_through_the_module(tmp_path, monkeypatch):
    seen = []
    real = lit_module.generate
    monkeypatch.setattr(lit_module, "generate", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    build_cli(["fit", *cli_args(tmp_path, "--model.max_new_tokens", "2", "--test_after_fit",
                                "false", "--trainer.max_steps", "2")])
    assert seen and all(kw["max_new_tokens"] == 2 and kw["num_beams"] == 1 for kw in seen)


class Crash(L.Callback):
    """Simulates a killed run: raises when a given step is about to start."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


def test_resume_mid_epoch_equals_the_uninterrupted_run(tmp_path):
    # 24 rows / batch 4 = 6 batches an epoch: the crash at step 4 is mid-epoch 0 and the
    # resumed run crosses into epoch 1. Same batches, optimizer and schedule -> same weights.
    a, b = (cli_args(tmp_path / f, "--test_after_fit", "false", "--trainer.max_steps", "9")
            for f in ("a", "b"))
    straight = build_cli(["fit", *a])
    crashed = build_cli(b, run=False)
    crashed.trainer.callbacks.append(Crash(at_step=4))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.trainer.fit(crashed.model, datamodule=crashed.datamodule)
    resumed = build_cli(["fit", *b, "--ckpt_path", "last"])
    assert resumed.trainer.global_step == straight.trainer.global_step == 9
    ours, theirs = resumed.model.state_dict(), straight.model.state_dict()
    assert ours.keys() == theirs.keys() and len(ours) > 0
    for name, value in theirs.items():
        assert torch.equal(ours[name], value), name


def test_print_config_and_rerun_do_not_fail(tmp_path, capsys):
    args = cli_args(tmp_path, "--config", str(ROOT / "configs/methods/parade4.yaml"))
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["method"]["class_path"] == "methods.Parade4"
    assert printed["model"]["method"]["init_args"]["rank"] == 24
    short = ["fit", *args, "--model.method", "LoRA", "--test_after_fit", "false",
             "--trainer.max_steps", "2", "--trainer.logger.init_args.version", "fixed"]
    build_cli(short)
    build_cli(short)  # same log dir: the saved config is overwritten, not an error


@pytest.mark.parametrize(("subcommand", "extra", "expect"), [
    ("fit", ["tasks/rte.yaml", "cpu_quick.yaml"], {"trainer.max_steps": 40}),
    ("fit", ["tasks/rte.yaml", "multi_gpu_llama2_7b.yaml"],
     {"trainer.strategy": "ddp", "trainer.devices": 4, "model.backbone_dtype": "bfloat16"}),
    ("predict", ["tasks/mt_bench.yaml", "mt_bench_predict.yaml"], {"model.num_beams": 5}),
])
def test_documented_config_stacks_parse(capsys, subcommand, extra, expect):
    configs = ["base.yaml", "methods/parade.yaml", *extra]
    args = [a for name in configs for a in ("--config", str(ROOT / "configs" / name))]
    with pytest.raises(SystemExit) as exit_info:
        build_cli([subcommand, *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    for dotted, value in expect.items():
        node = printed
        for key in dotted.split("."):
            node = node[key]
        assert node == value, dotted


def test_parade_rte_yaml_is_the_composition_of_its_pieces():
    """The complete config equals base + methods/parade + tasks/rte (no hand-copied drift)."""
    def load(*names: str) -> dict:
        merged: dict = {}
        for name in names:
            merged = _merge(merged, yaml.safe_load((ROOT / "configs" / name).read_text()))
        return merged

    assert load("parade_rte.yaml") == load("base.yaml", "methods/parade.yaml", "tasks/rte.yaml")


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def test_unknown_method_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_cli(["fit", *cli_args(tmp_path), "--model.method", "NoSuchMethod"])
    assert "NoSuchMethod" in capsys.readouterr().err


def test_predict_writes_predictions(tmp_path):
    args = cli_args(tmp_path, "--config", str(ROOT / "configs/methods/ia3.yaml"),
                    "--test_after_fit", "false", "--trainer.max_steps", "2")
    fit = build_cli(["fit", *args])
    ckpt = Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt"
    cli = build_cli(["predict", *args, "--ckpt_path", str(ckpt)])
    rows = (Path(cli.trainer.log_dir) / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 6 and "prediction" in json.loads(rows[0])


def _dev_generation_probe(monkeypatch) -> list[tuple[int, float]]:
    """Patch the dev evaluation to record (global step, sum of the trainable weights) per
    dev generation: which weights it generated with."""
    from callbacks.generation_eval import DevGenerationEval

    seen: list[tuple[int, float]] = []
    real = DevGenerationEval._evaluate

    def probe(self, trainer, pl_module, *args, **kwargs):
        weights = sum(float(p.detach().double().sum()) for p in pl_module.parameters()
                      if p.requires_grad)
        seen.append((trainer.global_step, weights))
        return real(self, trainer, pl_module, *args, **kwargs)

    monkeypatch.setattr(DevGenerationEval, "_evaluate", probe)
    return seen


def _lowest_dev_loss_at(monkeypatch, step: int) -> None:
    """Patch the validation loss so that it is lowest (a thousandth of its value) at global
    ``step``: which validation selects the checkpoint no longer depends on how training went."""
    real = PeftLitModule._loss

    def shaped(self, batch, stage):
        if stage != "val" or self.global_step != step:
            return real(self, batch, stage)
        method = self.method
        training_loss = method.training_loss
        method.training_loss = lambda model, b: training_loss(model, b) * 1e-3
        try:
            return real(self, batch, stage)
        finally:
            del method.training_loss

    monkeypatch.setattr(PeftLitModule, "_loss", shaped)


@pytest.mark.parametrize("crash_at", [None, 5])
def test_dev_generation_tested_equals_every_at_the_tested_checkpoint(tmp_path, monkeypatch,
                                                                     crash_at):
    from parade_lightning.sweep import study

    # the dev loss is made lowest at the third of the four validations (steps 2, 4, 6, 8), so
    # the tested checkpoint is not the last weights (by construction, not by a learning rate's
    # dynamics: a too-high rate did this on one build and not on another)
    common = ("--config", str(ROOT / "configs/methods/lora.yaml"), "--model.lr", "0.1",
              "--model.scheduler", "constant", "--trainer.max_steps", "8",
              "--model.max_new_tokens", "2", "--model.num_beams", "1")
    _lowest_dev_loss_at(monkeypatch, step=6)
    seen = _dev_generation_probe(monkeypatch)
    every = build_cli(["fit", *cli_args(tmp_path / "every", *common)])
    every_calls = list(seen)
    seen.clear()
    tested_args = cli_args(tmp_path / "tested", *common, "--model.dev_generation", "tested")
    if crash_at is None:
        tested = build_cli(["fit", *tested_args])
    else:  # killed after the step-4 checkpoint, resumed from last.ckpt
        crashed = build_cli(tested_args, run=False)
        crashed.trainer.callbacks.append(Crash(at_step=crash_at))
        with pytest.raises(RuntimeError, match="simulated crash"):
            crashed.trainer.fit(crashed.model, datamodule=crashed.datamodule)
        assert not seen  # no dev generation during fit
        tested = build_cli(["fit", *tested_args, "--ckpt_path", "last"])
    run_every, run_tested = (Path(c.trainer.log_dir) for c in (every, tested))
    metric = every.datamodule.metric
    a, b = study.dev_score(run_every, metric), study.dev_score(run_tested, metric)
    assert a.step is not None and a.score is not None
    assert a.step < a.last_step  # the tested checkpoint is not the last weights
    assert (b.step, b.loss, b.score, b.last_step) == (a.step, a.loss, a.score, a.last_step)
    # every mode generated at each of the 4 validations, tested mode once, at the start of
    # test, with the weights every mode had at the validation of the lowest dev loss
    assert len(every_calls) == 4 and len(seen) == 1
    val_steps = [s for s, _ in study.curves(run_every)["val/loss"]]
    assert seen[0][1] == pytest.approx(every_calls[val_steps.index(a.step)][1], rel=0, abs=1e-9)
    assert [s for s, _ in study.curves(run_tested)[f"val/{metric}"]] == [a.step]
    assert tested.model.eval_history["val"][-1]["fitting"] is True
    assert tested.run_summary["dev_best"]["value"] == a.score
