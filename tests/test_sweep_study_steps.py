"""The flattening check (parade_lightning/sweep/study_steps.py): a sweep that repeats a study's
runs with more steps, compared run by run with them (``study-report --repeats`` or the sweep
file's ``report: repeats:``)."""

from __future__ import annotations

import json

import pytest
from test_sweep import write_sweep
from test_sweep_study import AXES, FAKE, _finish, fake_finished

from parade_lightning.sweep import study, study_steps
from parade_lightning.sweep.commands import main as sweep_main
from parade_lightning.sweep.plan import expand
from parade_lightning.sweep.sweep_file import load_sweep

#: the longer runs: method -> dev curve [(step, val/loss, val/accuracy)], per-row test scores
LONGER = {
    # still falling at its last evaluation: lowest 0.55 at step 60 (0.70 at step 20 when short)
    "parade": ([(20, 0.7, 0.70), (40, 0.6, 0.80), (60, 0.55, 0.85)], [1, 1, 1, 1]),
    # flattened: lowest 0.45 at step 40, up again at 60; the same test answers as when short
    "lora": ([(20, 0.5, 0.60), (40, 0.45, 0.70), (60, 0.46, 0.70)], [0, 1, 0, 0]),
}


def test_a_longer_sweep_is_compared_run_by_run_with_the_study(tmp_path, capsys):
    (tmp_path / "study").mkdir(), (tmp_path / "longer").mkdir()
    study_config = write_sweep(tmp_path / "study", axes=AXES)
    longer_config = write_sweep(
        tmp_path / "longer", name="longer",
        axes={"task": ["rte"], "seed": [1], "method": [
            # the rates the study chose on dev (FAKE: PARADE 0.001, LoRA 0.01)
            {"name": "parade", "config": "parade", "overrides": {"model.lr": 0.001}},
            {"name": "lora", "config": "lora", "overrides": {"model.lr": 0.01}}]},
        report={"title": "At 60 steps", "repeats": str(study_config)})
    runs = expand(load_sweep(longer_config))
    for run in runs:
        fake_finished(run, LONGER[run.labels["method"]][1], LONGER[run.labels["method"]][0])
    (runs[0].run_dir / "config.yaml").write_text("trainer:\n  precision: 32-true\n")
    out = tmp_path / "report"
    args = ["study-report", "--config", str(longer_config), "--out", str(out)]
    sweep_main([*args, "--repeats", str(study_config)])  # the study has run nothing yet
    assert "flattening" not in (out / "table.md").read_text()
    assert not (out / "flattening.png").exists()
    assert json.loads((out / "comparisons.json").read_text())["repeats"] == {
        "sweep": "tiny", "pairs": [], "gaps": []}

    study_runs = expand(load_sweep(study_config))
    _finish(study_runs, study.selection_indices(study_runs, seed=1), FAKE)
    capsys.readouterr()
    sweep_main(args)  # the study named by the sweep file's report: repeats:
    table = (out / "table.md").read_text()
    assert table in capsys.readouterr().out
    section = table[table.index("### The flattening check"):].splitlines()
    assert "(sweep `tiny`: the same task, method, learning rate and seed)" in section[2]
    # PARADE: 30 → 60 steps, lowest dev loss 0.70 (20) → 0.55 (60), −21.4 %, still falling
    # (−8.3 % over the last interval); test 75.0 → 100.0: +25.0 over the 4 rows
    assert section[6].startswith(
        "| rte | parade | 0.001 | 1 | 30 → 60 | 0.7000 (20) → 0.5500 (60) | -21.4 % | -8.3 % | "
        "70.0 → 85.0 | 75.0 → 100.0 | +25.0 [")
    # LoRA: lowest 0.50 (10) → 0.45 (40), flattened (+2.2 %), the same test answers: 0, not called
    assert section[7] == (
        "| rte | lora | 0.01 | 1 | 20 → 60 | 0.5000 (10) → 0.4500 (40) | -10.0 % | 2.2 % | "
        "65.0 → 70.0 | 25.0 → 25.0 | +0.0 [0.0, 0.0] |")
    assert section[9] == ("Has the dev loss flattened by the longer length? The lowest dev loss "
                          "is the last evaluation's in 1 of 2 longer runs. Relative change of "
                          "the dev loss over the last evaluation interval (\"last interval\"): "
                          "median -3.1 %, from -8.3 % to 2.2 %.")
    assert "rte/parade (bf16-mixed → 32-true)" in table and "rte/lora (" not in table
    # the study's comparison at both lengths, on the same seed: 75 − 25 short, 100 − 25 long
    assert section[-1].startswith("| rte | 1 | parade − lora | +50.0 [")
    assert "| +75.0 [" in section[-1]
    record = json.loads((out / "comparisons.json").read_text())["repeats"]
    assert [(p["method"], p["run_id"], p["steps"]) for p in record["pairs"]] == [
        ("parade", ["rte/parade/lr=0.001/seed1", "rte/parade/default/seed1"], [30, 60]),
        ("lora", ["rte/lora/lr=0.01/seed1", "rte/lora/default/seed1"], [20, 60])]
    parade, lora = record["pairs"]
    assert (parade["difference"], parade["lowest_at_last_evaluation"]) == (
        pytest.approx(0.25), True)
    assert (lora["difference"], lora["called"], lora["lowest_at_last_evaluation"]) == (
        0.0, False, False)
    assert parade["dev_loss_curves"][1] == [[20, pytest.approx(0.7)], [40, pytest.approx(0.6)],
                                            [60, pytest.approx(0.55)]]
    [gap] = record["gaps"]
    assert (gap["a"], gap["b"], gap["shorter"]["difference"], gap["longer"]["difference"]) == (
        "parade", "lora", 0.5, 0.75)
    assert (out / "flattening.png").stat().st_size > 10_000

    # the summary carries the check under the sweep's own heading
    summary = tmp_path / "summary"
    sweep_main(["study-summary", "--config", str(study_config), "--config", str(longer_config),
                "--out", str(summary)])
    text = (summary / "table.md").read_text()
    assert text.index("## At 60 steps") < text.index("### The flattening check")
    assert "| rte | parade | 0.001 | 1 | 30 → 60 |" in text


def test_a_pair_needs_the_same_task_method_rate_and_seed():
    rows = [{"task": "rte", "method": "parade", "seed": 1, "lr": 0.003, "steps": 60,
             "run_id": "x"}]
    short = [{**rows[0], "lr": 0.001, "run_id": "y"}, {**rows[0], "seed": 2, "run_id": "z"},
             {**rows[0], "steps": 0, "run_id": "w"}]  # another rate, seed; a zero-shot row
    assert study_steps.check([], rows, [], short) == {"pairs": [], "gaps": []}
    assert study_steps.markdown({"pairs": [], "gaps": []}, "tiny") == ""
