"""`parade sweep report --dir` pools seeds only: runs whose saved configurations differ in
anything else (max_steps, lr, zero-shot vs trained) are separate rows."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from parade_lightning.sweep import report as rp
from parade_lightning.sweep.commands import main as sweep_main


def hand_run(root: Path, name: str, value: float, seed: int, steps: int, lr: float = 1e-3,
             global_step: int | None = None) -> None:
    run_dir = root / "lora" / "rte" / name
    run_dir.mkdir(parents=True)
    config = {"seed_everything": seed, "trainer": {"max_steps": steps, "logger": {
        "init_args": {"version": name}}}, "model": {"lr": lr, "method": {
            "class_path": "methods.lora.LoRA"}}, "data": {"init_args": {
                "data_dir": f"/somewhere/{name}", "batch_size": 4}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.json").write_text(json.dumps({
        "task": "rte", "metric": "accuracy", "value": value, "trainable_parameters": 10,
        "method": {"class_path": "methods.lora.LoRA"},
        "global_step": steps if global_step is None else global_step}))


def test_runs_group_by_full_configuration_seeds_pooled(tmp_path):
    runs = tmp_path / "runs"
    hand_run(runs, "a", 0.60, seed=1, steps=40)
    hand_run(runs, "b", 0.70, seed=2, steps=40)          # same settings, other seed: pooled
    hand_run(runs, "c", 0.50, seed=1, steps=10)          # other max_steps
    hand_run(runs, "d", 0.45, seed=1, steps=40, global_step=0)  # zero-shot `parade test`
    hand_run(runs, "e", 0.55, seed=1, steps=40, lr=1e-4)  # other lr
    results = rp.load_results(rp.find_run_dirs(runs))
    groups = {r.run_dir.name: r.group for r in results}
    assert groups["a"] == groups["b"]
    assert len({groups[k] for k in "acde"}) == 4
    assert "max_steps=10" in groups["c"] and "zero-shot" in groups["d"]
    assert "lr=0.0001" in groups["e"]
    assert "seed" not in groups["a"] and "data_dir" not in groups["a"]
    sweep_main(["report", "--dir", str(runs), "--out", str(tmp_path / "rep"), "--no-figure"])
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "65.0 ± 7.1 (n=2)" in report and report.count("(n=1)") == 3
