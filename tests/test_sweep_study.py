"""The quality-study protocol (parade_lightning/sweep/study.py): rates chosen on dev at the
tested checkpoint, the seeds to run next, paired bootstrap on the same test rows, the report."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import pytest
from test_sweep import write_sweep
from torch.utils.tensorboard import SummaryWriter

from parade_lightning import PeftLitModule
from parade_lightning.sweep import study, study_figures, study_report
from parade_lightning.sweep.commands import main as sweep_main
from parade_lightning.sweep.plan import expand
from parade_lightning.sweep.sweep_file import load_sweep

AXES = {"task": ["rte"],
        "method": ["parade", "lora",
                   {"name": "zero_shot", "config": "parade",
                    "overrides": {"trainer.max_steps": 0}}],
        "model.lr": [0.001, 0.01], "seed": [1, 2]}
#: (method, lr) -> dev curve [(step, val/loss, val/accuracy)] and per-row test scores
FAKE = {
    ("parade", 0.001): ([(10, 0.9, 0.50), (20, 0.7, 0.70), (30, 0.8, 0.90)], [1, 1, 1, 0]),
    ("parade", 0.01): ([(10, 0.6, 0.60), (20, 0.65, 0.80)], [1, 0, 1, 0]),
    ("lora", 0.001): ([(10, 0.9, 0.55)], [0, 0, 1, 0]),
    ("lora", 0.01): ([(10, 0.5, 0.65), (20, 0.5, 0.65)], [0, 1, 0, 0]),
}


def fake_finished(run, scores: list[int], curve=()) -> None:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    with SummaryWriter(str(run.run_dir)) as writer:
        for step, loss, acc in curve:
            writer.add_scalar("val/loss", loss, step)
            writer.add_scalar("val/accuracy", acc, step)
    (run.run_dir / "metrics.json").write_text(json.dumps({
        "task": "rte", "metric": "accuracy", "value": sum(scores) / len(scores),
        "trainable_parameters": 100, "num_examples": len(scores),
        "global_step": curve[-1][0] if curve else 0,
        "method": {"class_path": "methods.Parade", "init_args": {}}}))
    # the precision the run recorded (config.yaml): seed 1 ran bf16-mixed, later seeds fp32
    precision = "bf16-mixed" if run.values["seed"].raw == 1 else "32-true"
    (run.run_dir / "config.yaml").write_text(f"trainer:\n  precision: {precision}\n")
    # the code version the sweep recorded (run.json); runs older than it have none
    code = "abc123def456" if run.values["seed"].raw == 1 else None
    (run.run_dir / "run.json").write_text(json.dumps({"code": code} if code else {}))
    (run.run_dir / "predictions.jsonl").write_text("".join(
        json.dumps({"index": i, "score": float(s)}) + "\n" for i, s in enumerate(scores)))


def _finish(runs, indices, fake) -> None:
    for i in indices:
        run = runs[i]
        curve, scores = fake.get((run.labels["method"], run.overrides["model.lr"]),
                                 ((), [1, 0, 0, 0]))  # the zero-shot row: no training
        fake_finished(run, scores, curve)


def test_rates_are_chosen_on_dev_at_the_tested_checkpoint_and_seeds_follow(tmp_path, capsys):
    config = write_sweep(tmp_path, axes=AXES)
    runs = expand(load_sweep(config))
    phase1 = study.selection_indices(runs, seed=1)
    # 2 methods x 2 rates with seed 1, and the zero-shot row once (no rate matters)
    assert [runs[i].run_id for i in phase1] == [
        "rte/parade/lr=0.001/seed1", "rte/parade/lr=0.01/seed1", "rte/lora/lr=0.001/seed1",
        "rte/lora/lr=0.01/seed1", "rte/zero_shot/lr=0.001/seed1"]
    _finish(runs, phase1, FAKE)
    choices = study.select(runs, seed=1)
    # PARADE lr 0.001: its lowest dev loss (0.7 at step 20) has accuracy 0.70 — the 0.90 at
    # step 30 is not the tested checkpoint; lr 0.01: 0.60 at its lowest loss. 0.70 wins.
    assert choices[("rte", "parade")]["group"] == "lr=0.001"
    assert choices[("rte", "parade")]["dev_step"] == 20
    # LoRA: dev accuracy 0.55 (lr 0.001) vs 0.65 (lr 0.01; its two equal losses: the earlier)
    assert choices[("rte", "lora")]["group"] == "lr=0.01"
    phase2 = [i for i in study.seed_indices(runs, choices) if i not in phase1]
    assert [runs[i].run_id for i in phase2] == ["rte/parade/lr=0.001/seed2",
                                               "rte/lora/lr=0.01/seed2"]
    # both choices sit at an edge of the two-point grid: phase 2 waits for the next point
    assert study.grid_edges(runs, choices, 1) == [
        "rte/parade chose model.lr=0.001, the bottom of its grid [0.001, 0.01]",
        "rte/lora chose model.lr=0.01, the top of its grid [0.001, 0.01]"]
    with pytest.raises(SystemExit) as refused:
        sweep_main(["select", "--config", str(config), "--phase", "2"])
    assert refused.value.code == 2
    assert "edge rule" in capsys.readouterr().err
    sweep_main(["select", "--config", str(config), "--phase", "2", "--allow-edge"])
    assert capsys.readouterr().out.strip() == ",".join(map(str, phase2))
    sweep_main(["select", "--config", str(config)])
    assert "at an edge: rte/lora chose model.lr=0.01" in capsys.readouterr().out

    # before phase 2 the comparison is interim: shown, never called, whatever its interval
    interim = study_report.write(runs, tmp_path / "interim", baselines=("lora",))
    early = json.loads(interim["comparisons"].read_text())["comparisons"]
    assert [(c["complete"], c["called"], c["seeds_a"], c["seeds_planned_a"]) for c in early] \
        == [(False, False, 1, 2)]
    assert ("| not yet (interim): seeds 1 of 2 (parade), 1 of 2 (lora) |"
            in interim["table"].read_text())
    _finish(runs, phase2, FAKE)  # finish phase 2, then the report
    files = study_report.write(runs, tmp_path / "report", baselines=("lora",))
    rows = list(csv.DictReader(files["runs"].open()))
    assert len(rows) == 7 and {r["phase"] for r in rows} == {"selection", "seeds"}
    assert {(r["phase"], r["precision"]) for r in rows} == {("selection", "bf16-mixed"),
                                                          ("seeds", "32-true")}
    assert {(r["phase"], r["code"]) for r in rows} == {("selection", "abc123def456"),
                                                      ("seeds", "")}
    chosen = [r for r in rows if r["chosen"] == "True" and r["method"] == "parade"]
    assert [r["lr"] for r in chosen] == ["0.001", "0.001"]
    table = files["table"].read_text()
    assert "| rte | parade | 100 | 0.001 | 70.0 | 75.0 | 75.0–75.0 | 2 | 4 |" in table
    assert "| rte | zero_shot | 100 | – |" in table
    assert "parade − lora" in table and files["figure"].is_file()
    final = json.loads(files["comparisons"].read_text())["comparisons"]
    assert [(c["complete"], c["seeds_a"], c["seeds_b"]) for c in final] == [(True, 2, 2)]
    assert "not yet" not in table
    # the rate selection with each run's dev-loss curve: was it flat at the end?
    assert ("| rte | parade | 0.001 | yes | 70.0 | 0.7000 (20) | 14.3 % | "
            "10:0.9000 20:0.7000 30:0.8000 |") in table
    assert "| rte | lora | 0.001 |  | 55.0 | 0.9000 (10) | – | 10:0.9000 |" in table
    assert "| rte | parade | 0.01 | yes | 60.0 | 0.6000 (10) | 8.3 % |" not in table  # not chosen
    assert "| rte | parade | 0.01 |  | 60.0 | 0.6000 (10) | 8.3 % |" in table
    # lowest loss at the last evaluation: lora 0.001 (one point) and lora 0.01 (equal losses:
    # the earlier is the tested one, so not the last) -> 1 of 4
    assert ("The lowest dev loss is the last evaluation's in 1 of 4 runs. Relative change of the "
            "dev loss over the last evaluation interval (\"last interval\"): median 8.3 %, from "
            "0.0 % to 14.3 %.") in table
    assert rows[0]["dev_loss_curve"].startswith("10:")
    assert float(rows[0]["dev_loss_last_change"]) == pytest.approx(0.8 / 0.7 - 1)
    # the figure's score panels: dev score against the rate (the choice flagged), and the test
    # scores over seeds at the chosen rate, the zero-shot row included
    panels = study_figures.figure_data(study_report.collect(runs, 1)[0], 1)["rte"]
    panels["rates"] = {m: [(lr, round(score, 3), chosen) for lr, score, chosen in points]
                       for m, points in panels["rates"].items()}  # the dev scores are float32
    assert panels["rates"] == {"parade": [(0.001, 70.0, True), (0.01, 60.0, False)],
                               "lora": [(0.001, 55.0, False), (0.01, 65.0, True)]}
    assert panels["tests"] == {"parade": [75.0, 75.0], "lora": [25.0, 25.0],
                               "zero_shot": [25.0]}


def test_an_unfinished_phase_1_still_reports_its_runs_on_dev(tmp_path):
    runs = expand(load_sweep(write_sweep(tmp_path, axes=AXES)))
    first = runs[study.selection_indices(runs, seed=1)[0]]
    fake_finished(first, [1, 0, 1, 1], FAKE[("parade", 0.001)][0])
    files = study_report.write(runs, tmp_path / "report")
    table = files["table"].read_text()
    assert "phase 1 not finished" in table and "| rte | parade | 0.001 |  | 70.0 |" in table
    assert "test median" not in table  # no rate is chosen yet: no headline table
    assert len(list(csv.DictReader(files["runs"].open()))) == 1 and files["figure"].is_file()
    panels = study_figures.figure_data(study_report.collect(runs, 1)[0], 1)["rte"]
    assert [(lr, round(score, 3), chosen) for lr, score, chosen in panels["rates"]["parade"]] == [
        (0.001, 70.0, False)]
    assert list(panels["rates"]) == ["parade"] and panels["tests"] == {}


def test_an_ablation_is_compared_with_the_full_method_of_another_sweep(tmp_path, capsys):
    """``study-report --reference``: the variants of an ablation sweep against the target
    method's cell in the main study's sweep, at the rate chosen there (paper table 6)."""
    (tmp_path / "main").mkdir(), (tmp_path / "ablation").mkdir()
    main_config = write_sweep(tmp_path / "main", axes=AXES)
    # the sweep file names its reference (study-report's defaults; the options override them)
    ablation_config = write_sweep(tmp_path / "ablation", name="ablation",
                                  axes={**AXES, "method": ["parade2"]},
                                  report={"title": "Variants", "reference": str(main_config),
                                          "baselines": ["parade2"]})
    variant = {("parade2", 0.001): ([(10, 0.8, 0.60)], [1, 1, 0, 0]),
               ("parade2", 0.01): ([(10, 0.7, 0.75)], [0, 1, 0, 0])}
    main_runs = expand(load_sweep(main_config))
    runs = expand(load_sweep(ablation_config))
    _finish(runs, study.selection_indices(runs, seed=1), variant)
    out = tmp_path / "report"
    args = ["study-report", "--config", str(ablation_config), "--reference", str(main_config),
            "--baselines", "parade2", "--out", str(out)]
    with pytest.raises(SystemExit, match="reference sweep tiny has no chosen rate for 'parade'"):
        sweep_main(args)  # the main study's phase 1 has not run: nothing to compare with
    assert not (out / "table.md").exists()
    with pytest.raises(SystemExit, match=r"study-summary: \S+ablation/sweep\.yaml: the reference"):
        sweep_main(["study-summary", "--config", str(ablation_config), "--out", str(out)])
    _finish(main_runs, study.selection_indices(main_runs, seed=1), FAKE)
    sweep_main(args)  # the main study's seed 2 is still to run: interim
    interim = json.loads((out / "comparisons.json").read_text())
    assert [(c["a"], c["b"], c["seeds_a"], c["seeds_planned_a"], c["seeds_b"], c["complete"])
            for c in interim["comparisons"]] == [("parade", "parade2", 1, 2, 1, False)]
    choices = study.select(main_runs, 1)
    _finish(main_runs, study.seed_indices(main_runs, choices), FAKE)
    _finish(runs, study.seed_indices(runs, study.select(runs, 1)), variant)
    capsys.readouterr()
    sweep_main(["study-report", "--config", str(ablation_config), "--out", str(out)])
    table = (out / "table.md").read_text()
    assert table in capsys.readouterr().out
    head = table.splitlines()
    # the full method first, named with its sweep, at the rate it chose there; then the variant
    assert head[2] == "| rte | parade (from tiny) | 100 | 0.001 | 70.0 | 75.0 | 75.0–75.0 | 2 | 4 |"
    assert head[3] == "| rte | parade2 | 100 | 0.01 | 75.0 | 25.0 | 25.0–25.0 | 2 | 4 |"
    assert "| rte | parade − parade2 | 50.0 |" in table and "not yet" not in table
    record = json.loads((out / "comparisons.json").read_text())
    assert record["reference"]["sweep"] == "tiny"
    assert list(record["reference"]["choices"]) == ["rte/parade"]
    assert record["reference"]["choices"]["rte/parade"]["group"] == "lr=0.001"
    [final] = record["comparisons"]
    assert (final["difference"], final["seeds_a"], final["seeds_b"], final["complete"]) == (
        pytest.approx(0.5), 2, 2, True)
    assert {r["method"] for r in csv.DictReader((out / "runs.csv").open())} == {"parade2"}  # own
    assert "| rte | parade | 0.001 |" not in table

    # the whole study in one place: both sweeps' runs, headline tables, comparisons, a figure
    summary = tmp_path / "summary"
    (summary / "ablation").mkdir(parents=True)
    (summary / "ablation" / "table.md").write_text(table)
    empty = write_sweep(tmp_path / "summary", name="later", axes=AXES)  # nothing run yet
    sweep_main(["study-summary", "--config", str(main_config), "--config",
                str(ablation_config), "--config", str(empty), "--out", str(summary)])
    rows = list(csv.DictReader((summary / "runs.csv").open()))
    assert [(r["sweep"], r["method"]) for r in rows].count(("tiny", "parade")) == 3
    assert {r["sweep"] for r in rows} == {"tiny", "ablation"} and len(rows) == 7 + 3
    text = (summary / "table.md").read_text()
    assert text.index("## tiny") < text.index("## Variants")
    assert "Sweep `tiny`." in text and "[`ablation/table.md`](ablation/table.md)" in text
    assert "| rte | parade − lora |" in text and "| rte | parade − parade2 | 50.0 |" in text
    assert "| rte | parade (from tiny) | 100 | 0.001 |" in text
    assert "Rate selection" not in text  # that stays in each sweep's own report
    assert text.endswith("## later\n\nSweep `later`.\n\nNo run has finished yet.\n")
    assert (summary / "summary.png").stat().st_size > 10_000
    cells = study_report.summary_cells(study_report.gather(
        runs, reference=("tiny", main_runs), target="parade", baselines=("parade2",)))
    assert cells == {"rte": {"parade (ref.)": [75.0, 75.0], "parade2": [25.0, 25.0]}}


def test_paired_bootstrap_calls_only_clear_differences():
    same = [{i: float(i % 2) for i in range(200)}] * 3
    tie = study.paired_bootstrap(same, same, replicates=500)
    assert tie["difference"] == 0.0 and not tie["called"]
    better = [{i: 1.0 if i % 10 else 0.0 for i in range(200)}] * 3
    worse = [{i: 1.0 if i % 2 else 0.0 for i in range(200)}] * 3
    result = study.paired_bootstrap(better, worse, replicates=500)
    assert result["called"] and result["low"] > 0 and abs(result["difference"] - 0.4) < 1e-9
    assert result["rows"] == 200 and result["seeds_a"] == 3
    partial = study.paired_bootstrap([{0: 1.0, 1: 1.0}], [{1: 0.0, 2: 0.0}], replicates=50)
    assert partial["rows"] == 1  # only the rows both methods answered are compared


def test_study_sweeps_ship_and_plan():
    root = Path(__file__).resolve().parents[1]
    for name in ("quality_sst2", "quality_e2e", "quality_squad", "quality_ablation_sst2",
                 "quality_sst2_steps", "quality_e2e_steps"):
        runs = expand(load_sweep(root / "sweeps" / f"{name}.yaml"), solve_budgets=False)
        # method x rate with seed 1, plus a zero-shot row (E2E's grid gained 3e-2: edge rule)
        expected = {"quality_sst2": 16, "quality_ablation_sst2": 16, "quality_e2e": 13,
                    "quality_sst2_steps": 3, "quality_e2e_steps": 3}.get(name, 10)
        # every study run trains in fp32 (docs/results/quality/README.md, "Cost")
        assert all(r.overrides["trainer.precision"] == "32-true" for r in runs), name
        assert len(study.selection_indices(runs, 1)) == expected, name
        # the dev metric every 100 steps only where its runs had begun so (SST-2's selection
        # and seeds); elsewhere for the tested checkpoint only
        mode = runs[0].overrides.get("model.dev_generation", "every")
        assert mode == ("every" if name == "quality_sst2" else "tested"), name
    assert "dev_generation" in inspect.signature(PeftLitModule).parameters
    # the flattening checks: each method once, at the rate it chose at 600 steps on that task's
    # dev, twice the steps, the rest of the task's protocol unchanged
    chosen = {"sst2": {"parade": 0.01, "lora": 0.003, "ia3_paper": 0.01},
              "e2e": {"parade": 0.003, "lora": 0.01, "ia3_paper": 0.01}}
    for task, rates in chosen.items():
        steps = expand(load_sweep(root / f"sweeps/quality_{task}_steps.yaml"),
                       solve_budgets=False)
        study_run = expand(load_sweep(root / f"sweeps/quality_{task}.yaml"),
                           solve_budgets=False)[0]
        assert {(r.labels["method"], r.overrides["model.lr"], r.overrides["trainer.max_steps"])
                for r in steps} == {(m, lr, 1200) for m, lr in rates.items()}, task
        for run in steps:
            assert run.labels["task"] == task and run.labels["seed"] == "seed1"
            differs = {k for k in set(run.overrides) | set(study_run.overrides)
                       if run.overrides.get(k) != study_run.overrides.get(k)
                       and not k.startswith("trainer.logger.")}
            # SST-2's own runs generate the dev metric at every validation (they began so)
            assert differs <= {"trainer.max_steps", "data.init_args.max_train_examples",
                               "model.lr", "model.dev_generation"}, (task, differs)


def test_dev_curves_are_read_once_per_state_of_the_event_files(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with SummaryWriter(str(run_dir)) as writer:
        writer.add_scalar("val/loss", 0.9, 10)
    reads = []
    real = study.EventAccumulator
    monkeypatch.setattr(study, "EventAccumulator",
                        lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    study._read_curves.cache_clear()
    first = study.curves(run_dir)
    first["val/loss"].append((99, 0.0))  # a caller's edit does not reach the cache
    assert study.curves(run_dir) == {"val/loss": [(10, 0.8999999761581421)]}
    assert len(reads) == 1
    with SummaryWriter(str(run_dir)) as writer:  # the run writes on: read again
        writer.add_scalar("val/loss", 0.5, 20)
    assert [s for s, _ in study.curves(run_dir)["val/loss"]] == [10, 20]
    assert len(reads) == 3  # both event files once more


def test_wall_time_sums_resumed_attempts_or_says_unknown():
    timed = {"seconds": {"fit": 100.0, "test": 5.25}}
    assert study_report.wall_seconds(timed, {"attempts": 3, "elapsed_s": 7.0}) == 105.2
    assert study_report.wall_seconds({}, {"attempts": 1, "elapsed_s": 42.0}) == 42.0
    # an older run resumed without the Timer: its first attempt's time is lost, so no figure
    assert study_report.wall_seconds({}, {"attempts": 2, "elapsed_s": 42.0}) is None
    assert study_report.wall_seconds({"seconds": {"fit": None, "test": 3.0}}, {}) == 3.0
    # trained, but its fit time went unrecorded (resumed at max_steps before the fix): unknown
    assert study_report.wall_seconds({"seconds": {"fit": None, "test": 3.0},
                                      "global_step": 600}, {"attempts": 2}) is None
    assert study_report.wall_seconds({"global_step": 600}, {"attempts": 1, "elapsed_s": 9.0}) == 9.0


def _fake_lane(monkeypatch) -> list[str]:
    """``runner.run_one`` replaced by writing the FAKE results: the lane's order, no fits."""
    from parade_lightning.sweep import runner

    order: list[str] = []

    def run_one(sweep, run, supervisor=None, fresh=False):
        order.append(run.run_id)
        curve, scores = FAKE.get((run.labels["method"], run.overrides["model.lr"]),
                                 ((), [1, 0, 0, 0]))
        fake_finished(run, scores, curve)
        return {"state": "done", "value": sum(scores) / len(scores)}

    monkeypatch.setattr(runner, "run_one", run_one)
    return order


def test_a_study_lane_runs_phase_1_then_phase_2_unless_a_rate_is_at_an_edge(
        tmp_path, monkeypatch, capsys):
    config = write_sweep(tmp_path, axes=AXES)
    runs = expand(load_sweep(config))
    order = _fake_lane(monkeypatch)
    sweep_main(["study-run", "--config", str(config), "--wait", "0"])
    phase1 = [runs[i].run_id for i in study.selection_indices(runs, 1)]
    assert order == phase1  # both choices sit at an edge of the 2-point grid: no phase 2
    assert "nothing left to start" in capsys.readouterr().out
    sweep_main(["study-run", "--config", str(config), "--wait", "0", "--allow-edge"])
    assert order[len(phase1):] == ["rte/parade/lr=0.001/seed2", "rte/lora/lr=0.01/seed2"]
    assert json.loads((tmp_path / "out" / "status.json").read_text())["counts"]["done"] == 7


def test_a_study_lane_skips_runs_held_by_another_and_stops_at_max_runs(tmp_path, monkeypatch):
    from parade_lightning.sweep import state as st

    runs = expand(load_sweep(write_sweep(tmp_path, axes=AXES)))
    first, second = (runs[i] for i in study.selection_indices(runs, 1)[:2])
    lock = st.RunLock(first.run_dir)
    assert lock.acquire()  # another lane is running the first run
    st.set_run_status(first.run_dir, "running")
    try:
        assert study.next_run(runs, 1) == (second, True)
        order = _fake_lane(monkeypatch)
        sweep_main(["study-run", "--config", str(tmp_path / "sweep.yaml"), "--max-runs", "2"])
        assert order == [r.run_id for r in runs
                         if r.index in study.selection_indices(runs, 1)[1:3]]
    finally:
        lock.release()
    assert study.next_run(runs, 1)[0] is not None  # released: startable again (interrupted)
    assert st.run_state(first.run_dir) == "interrupted"


def test_a_running_lane_takes_up_a_rate_added_to_the_sweep_file(tmp_path, monkeypatch):
    """The edge rule's extension needs no lane restart: the sweep file is read per pick."""
    import yaml

    from parade_lightning.sweep import runner

    config = write_sweep(tmp_path, axes=AXES)
    order = _fake_lane(monkeypatch)
    fake = runner.run_one

    def run_one_then_extend(sweep, run, supervisor=None, fresh=False):
        outcome = fake(sweep, run, supervisor, fresh)
        if len(order) == 1:  # after the first run, a person adds a rate to the grid
            data = yaml.safe_load(config.read_text())
            data["axes"]["model.lr"] = [0.001, 0.01, 0.1]
            config.write_text(yaml.safe_dump(data, sort_keys=False))
        return outcome

    monkeypatch.setattr(runner, "run_one", run_one_then_extend)
    sweep_main(["study-run", "--config", str(config), "--wait", "0"])
    assert "rte/parade/lr=0.1/seed1" in order and "rte/lora/lr=0.1/seed1" in order
    assert len(order) == len(set(order)) == 7  # 3 methods' rates + the zero-shot row, once each


def test_dev_curve_colours_are_one_family_per_method_and_never_repeat():
    """The loss panel draws every rate of every method: no two lines share a colour (PARADE
    1e-2 and (IA)³ 1e-2 were both red), and a method's rates are shades of one family."""
    rows = [{"run_id": f"{m}/{lr}", "method": m, "lr": lr}
            for m in ("parade", "lora", "ia3_paper") for lr in (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)]
    rows.append({"run_id": "zero", "method": "zero_shot", "lr": 3e-4})
    colours = study_figures.line_colours(rows)
    assert set(colours) == {r["run_id"] for r in rows}
    assert len(set(colours.values())) == len(rows)
    lora = [colours[f"lora/{lr}"] for lr in (3e-4, 3e-2)]
    assert sum(lora[1][:3]) < sum(lora[0][:3])  # a higher rate: a darker shade
