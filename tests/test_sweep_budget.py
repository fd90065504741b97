"""Budget matching of `parade sweep`: exact counts on the meta device, knobs from the method
classes (``size_knob`` / ``sized``), budget axes and ``match:`` entries in plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_sweep import write_sweep

from parade_lightning.sweep.budget_match import (
    PRESETS,
    count_parameters,
    solve,
    target_count,
)
from parade_lightning.sweep.commands import main as sweep_main
from parade_lightning.sweep.plan import expand
from parade_lightning.sweep.sweep_file import load_sweep

LLAMA2_7B = "llama2-7b"
ROOT = Path(__file__).resolve().parents[1]


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




def _parade_count(preset: dict, rank: int = 12, capsules: int = 4) -> int:
    """PARADE's trainable count from the architecture (eq. 6, q v u): per layer W_down,
    the pooler's W_k^cap and v_k, W_up and b_up over d_q + d_v + d_ffn."""
    d = preset.get("hidden_size", preset.get("n_embd"))
    ffn = preset.get("intermediate_size", 4 * d)
    layers = preset.get("num_hidden_layers", preset.get("n_layer"))
    d_out = 2 * d + ffn
    per_layer = d * rank + capsules * rank * (rank // capsules) + capsules * rank \
        + (rank + 1) * d_out
    return layers * per_layer


def test_table7_plans_matched_budgets_on_gpt2_large_and_pythia():
    """sweeps/table7.yaml (appendix H): both backbones x BoolQ/E2E/SQuAD x (IA)^3/LoRA/PARADE
    x 5 seeds; the baselines are solved to PARADE's count on each backbone's preset, which
    also checks the role table places q v u / q k u / every role on fused GPT-2 and GPT-NeoX."""
    runs = expand(load_sweep(ROOT / "sweeps" / "table7.yaml", root=ROOT))
    assert len(runs) == 2 * 3 * 3 * 5
    by_id = {r.run_id: r for r in runs}
    for group, hub_id, preset in (("gpt2-large", "openai-community/gpt2-large", "gpt2-large"),
                                  ("pythia-1.4b", "EleutherAI/pythia-1.4b", "pythia-1.4b")):
        parade = by_id[f"e2e/parade/{group}/seed1"]
        assert parade.overrides["model.backbone"] == hub_id and parade.budget is None
        target = _parade_count(PRESETS[preset])
        assert count_parameters(hub_id, "methods.Parade", {}) == target
        for method, knob in (("ia3_paper", "dim"), ("lora", "r")):
            run = by_id[f"squad/{method}/{group}/seed3"]
            assert run.budget["target"] == target and run.budget["knob"] == knob
            assert abs(run.budget["relative_error"]) < 0.01
            assert run.overrides[f"model.method.init_args.{knob}"] == run.budget["value"]
    gpt2 = [r for r in runs if "/gpt2-large/" in r.run_id]
    assert {r.overrides.get("data.init_args.max_length") for r in gpt2} == {1024}
    assert by_id["boolq/lora/pythia-1.4b/seed1"].overrides.get("data.init_args.max_length") is None
