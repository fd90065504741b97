"""sweeps/adalora.yaml checked to plan: PARADE vs AdaLoRA (paper setting and matched budget)
on the paper's tasks; the matched AdaLoRA's solved init_r reaches the CLI as a config the
LightningCLI parses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from parade_lightning.cli import build_cli
from parade_lightning.sweep.budget_match import count_parameters
from parade_lightning.sweep.plan import expand
from parade_lightning.sweep.sweep_file import load_sweep

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["sst2", "rte", "qnli", "boolq", "copa", "record", "squad", "e2e", "gsm8k", "wikisql",
         "alpaca"]
PARADE_7B = 9_566_208  # PARADE r = 12, K = 4 on LLaMA-2 7B (tests/test_sweep_budget.py)


def test_adalora_sweep_plans_every_task_method_and_seed():
    sweep = load_sweep(ROOT / "sweeps/adalora.yaml", root=ROOT)
    runs = expand(sweep, solve_budgets=False)
    assert len(runs) == len(TASKS) * 3 * 5
    assert [r.run_id.split("/")[0] for r in runs[::15]] == TASKS
    assert {r.run_id.split("/")[1] for r in runs} == {"adalora", "adalora_matched", "parade"}


def test_matched_adalora_is_solved_on_llama2_7b_and_parses(capsys):
    sweep = dataclasses.replace(load_sweep(ROOT / "sweeps/adalora.yaml", root=ROOT),
                                count_backbone="llama2-7b")
    runs = expand(sweep)
    paper = next(r for r in runs if r.run_id == "rte/adalora/default/seed1")
    matched = next(r for r in runs if r.run_id == "rte/adalora_matched/default/seed1")
    assert paper.budget is None and matched.budget["target"] == PARADE_7B
    assert (matched.budget["knob"], matched.budget["value"]) == ("peft_config.init_r", 4)
    assert matched.budget["count"] == count_parameters("llama2-7b", "methods.FromPeft", {
        "peft_type": "ADALORA", "peft_config": {"init_r": 4, "target_r": 2}})
    assert abs(matched.budget["relative_error"]) < 0.05
    args = matched.fit_args()
    pairs = dict(zip(args[7::2], args[8::2], strict=False))
    peft_config = json.loads(pairs["--model.method.init_args.peft_config"])
    assert peft_config["init_r"] == 4 and peft_config["target_r"] == 2  # half pruned, as paper
    assert peft_config["tfinal"] == 0.2  # the rest of configs/methods/adalora.yaml stays
    with pytest.raises(SystemExit):
        build_cli([*args, "--print_config"])
    method = yaml.safe_load(capsys.readouterr().out)["model"]["method"]
    assert method["class_path"].endswith("FromPeft")
    assert method["init_args"]["peft_config"]["init_r"] == 4
