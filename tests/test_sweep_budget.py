"""Budget matching of `parade sweep`: exact counts on the meta device, knobs from the method
classes (``size_knob`` / ``sized``), budget axes and ``match:`` entries in plans."""

from __future__ import annotations

import json

import pytest
from test_sweep import write_sweep

from parade_lightning.sweep.budget_match import count_parameters, solve, target_count
from parade_lightning.sweep.commands import main as sweep_main
from parade_lightning.sweep.plan import expand
from parade_lightning.sweep.sweep_file import load_sweep

LLAMA2_7B = "llama2-7b"


def test_budget_known_llama2_7b_cases():
    assert solve(LLAMA2_7B, "methods.LoRA", {"r": 4, "alpha": 8.0}, 9_994_240).value == 4
    assert solve(LLAMA2_7B, "methods.PaperIA3", {}, 9_831_936).value == 16
    assert solve(LLAMA2_7B, "methods.Parade", {"num_capsules": 4}, 9_566_208).value == 12
    match12 = {"class_path": "methods.Parade", "init_args": {"rank": 12}}
    lora = solve(LLAMA2_7B, "methods.LoRA", {"r": 8, "alpha": 16.0}, match12)
    assert (lora.value, lora.count, lora.target) == (4, 9_994_240, 9_566_208)
    assert lora.init_args["alpha"] == 8.0  # alpha / r kept at 2


def test_budget_solution_is_the_closest_count():
    target = 3_000_000
    match = solve(LLAMA2_7B, "methods.PaperIA3", {}, target)
    per_dim = count_parameters(LLAMA2_7B, "methods.PaperIA3", {"dim": 1})
    assert match.count == match.value * per_dim  # linear in dim
    for other in (match.value - 1, match.value + 1):
        assert abs(other * per_dim - target) >= abs(match.count - target)


def test_parade_small_ranks_use_fewer_capsules():
    """r = 3 and 6 (figure 2) cannot have K = 4 capsules: K becomes 3."""
    spec = {"class_path": "methods.Parade", "init_args": {"rank": 3}}
    match = solve(LLAMA2_7B, "methods.Parade", {}, spec)
    assert match.value == 3 and match.init_args["num_capsules"] == 3
    assert match.count == target_count(LLAMA2_7B, spec)
    assert solve(LLAMA2_7B, "methods.Parade", {}, {
        "class_path": "methods.Parade", "init_args": {"rank": 24}}).init_args["num_capsules"] == 4
    with pytest.raises(ValueError, match="fixed size"):
        solve(LLAMA2_7B, "methods.IA3", {}, 1e6)


def test_budget_axis_in_a_plan_sets_the_solved_overrides(tmp_path):
    config = write_sweep(tmp_path, axes={
        "task": ["rte"], "method": ["parade", "lora", "ia3_paper"],
        "budget": [{"class_path": "methods.Parade", "init_args": {"rank": 3}}, 20_000]})
    runs = expand(load_sweep(config))
    assert [r.run_id for r in runs[:2]] == ["rte/parade/match=Parade-rank3/run",
                                            "rte/parade/budget=20000/run"]
    parade = runs[0]
    assert parade.overrides["model.method.init_args.rank"] == 3
    assert parade.overrides["model.method.init_args.num_capsules"] == 3
    lora = runs[3]
    assert lora.budget["knob"] == "r" and lora.overrides["model.method.init_args.r"] == \
        lora.budget["value"]
    assert abs(lora.budget["relative_error"]) < 0.5
    ia3 = runs[4]
    assert ia3.budget["target"] == parade.budget["count"]  # matched to PARADE r=3
    assert "model.method.init_args.dim" in ia3.overrides


def test_method_match_key_and_budget_cli(tmp_path, capsys):
    config = write_sweep(tmp_path, axes={"task": ["rte"], "method": [
        {"name": "lora_m", "config": "lora", "match": {"class_path": "methods.Parade",
                                                       "init_args": {"rank": 12}}}]})
    (run,) = expand(load_sweep(config))
    assert run.budget["target"] == target_count("tiny-llama", {
        "class_path": "methods.Parade", "init_args": {"rank": 12}})
    sweep_main(["budget", "--backbone", LLAMA2_7B, "--method", "methods.LoRA",
                "--target", "9994240"])
    assert json.loads(capsys.readouterr().out)["value"] == 4


