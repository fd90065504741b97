"""`parade sweep`: plan, resumable execution, failure records, reports, budget matching, SLURM.

The end-to-end part runs a real 2 tasks x 2 methods x 2 seeds sweep of the tiny model on tiny
jsonl fixtures, once with injected faults (a failing run, then the sweep killed by SIGKILL
right after a run's first checkpoint) and once more to finish it.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from parade_lightning.sweep import runner
from parade_lightning.sweep import state as st
from parade_lightning.sweep.commands import main as sweep_main
from parade_lightning.sweep.plan import expand
from parade_lightning.sweep.slurm import compress
from parade_lightning.sweep.sweep_file import SweepError, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[1]
LLAMA2_7B = "llama2-7b"
MAX_STEPS = 4

BASE = {  # the paper's base.yaml, minus the slow callbacks, sized for the tiny model
    "seed_everything": 1, "test_after_fit": True,
    "trainer": {
        "max_steps": MAX_STEPS, "val_check_interval": 2, "check_val_every_n_epoch": None,
        "num_sanity_val_steps": 0, "enable_progress_bar": False, "enable_model_summary": False,
        "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                   "init_args": {"save_dir": "runs", "name": "x"}},
        "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"monitor": "val/loss", "mode": "min", "save_top_k": 1,
                           "save_last": True, "filename": "best-{step}"}},
            {"class_path": "callbacks.TestReport"},
        ],
    },
    "model": {"backbone": "tiny-llama", "num_beams": 1, "lr": 1.0e-2},
}


def write_data(root: Path) -> Path:
    rows = {
        "rte": lambda i: {"sentence1": f"The cat {i} sat.", "label": i % 2, "idx": i,
                          "sentence2": "A cat sat." if i % 2 == 0 else "A dog flew."},
        "copa": lambda i: {"premise": f"Premise {i}.", "choice1": "one", "choice2": "two",
                           "question": "cause", "label": i % 2, "idx": i},
    }
    for task, make in rows.items():
        (root / task).mkdir(parents=True)
        for split, n in (("train", 8), ("validation", 8)):
            (root / task / f"{split}.jsonl").write_text(
                "\n".join(json.dumps(make(i)) for i in range(n)))
    return root


def write_sweep(folder: Path, **extra) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    data = write_data(folder / "data") if not (folder / "data").exists() else folder / "data"
    sweep = {
        "name": "tiny", "root": str(ROOT), "output": str(folder / "out"),
        "configs": [str(folder / "base.yaml"), "{method}", "{task}"],
        "overrides": {"data.init_args.data_dir": str(data), "data.init_args.batch_size": 4,
                      "data.init_args.cache_dir": str(folder / "cache")},
        "env": {"PARADE_SWEEP_TEST": "1"},
        "axes": {"task": ["rte", "copa"], "method": ["lora", "ia3_paper"], "seed": [1, 2]},
        **extra,
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def sweep_process(config: Path,
                  faults: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != runner.LAUNCH_ENV}
    if faults:  # tests/faults.py, importable through PYTHONPATH
        env[runner.LAUNCH_ENV] = json.dumps({p: f"faults {k}" for p, k in faults.items()})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                          env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "parade_lightning.cli", "sweep", "run",
                           "--config", str(config)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The sweep run with faults (killed at run #2), its state then, and the rerun."""
    folder = tmp_path_factory.mktemp("sweep")
    config = write_sweep(folder)
    runs = expand(load_sweep(config))
    ids = [r.run_id for r in runs]
    first = sweep_process(config, {ids[1]: "fail", ids[2]: "kill_sweep"})
    after_kill = {
        "returncode": first.returncode, "stdout": first.stdout,
        "states": json.loads((folder / "out" / "status.json").read_text())["runs"],
        "metrics0": (runs[0].run_dir / "metrics.json").read_text(),
        "mtime0": (runs[0].run_dir / "metrics.json").stat().st_mtime_ns,
        "last2": torch.load(runs[2].run_dir / "checkpoints" / "last.ckpt", weights_only=True),
        "events": len(events(folder / "out")),
        "error1": (runs[1].run_dir / "error.txt").read_text(),
    }
    second = sweep_process(config)
    return {"folder": folder, "config": config, "runs": runs, "after_kill": after_kill,
            "second": second}


def test_failure_is_recorded_and_the_kill_leaves_a_checkpoint(finished):
    state = finished["after_kill"]
    assert state["returncode"] == -signal.SIGKILL  # the sweep itself was killed at run #2
    runs = finished["runs"]
    # status.json as the killed sweep left it: #1 failed without stopping the sweep, #2 started
    by_index = {row["index"]: row for row in state["states"]}
    assert by_index[0]["state"] == "done" and by_index[1]["state"] == "failed"
    assert by_index[1]["returncode"] == 1 and by_index[3]["state"] == "pending"
    assert "[2/8] #1" in state["stdout"] and "failed" in state["stdout"]
    assert "[3/8] #2" in state["stdout"]  # the next run started after the failure
    error = state["error1"]
    assert "injected failure" in error and "exit code 1" in error
    assert not (runs[1].run_dir / "error.txt").exists()  # the retry succeeded
    # the killed run's last checkpoint holds what resuming needs
    last = state["last2"]
    assert last["global_step"] == 2 and last["optimizer_states"] and last["lr_schedulers"]


def test_rerun_completes_only_the_missing_runs(finished):
    second, runs, out = finished["second"], finished["runs"], finished["folder"] / "out"
    assert second.returncode == 0, second.stdout + second.stderr
    before = finished["after_kill"]
    assert (runs[0].run_dir / "metrics.json").read_text() == before["metrics0"]
    assert (runs[0].run_dir / "metrics.json").stat().st_mtime_ns == before["mtime0"]
    started = [e["index"] for e in events(out)[before["events"]:] if e["event"] == "start"]
    assert started == [1, 2, 3, 4, 5, 6, 7]  # #0 was not run again
    assert "#0 rte/lora/default/seed1: done, skipped" in second.stdout
    summary = json.loads((out / "status.json").read_text())
    assert summary["counts"]["done"] == 8
    for run in runs:
        metrics = json.loads((run.run_dir / "metrics.json").read_text())
        assert metrics["global_step"] == MAX_STEPS and metrics["task"] == run.labels["task"]
        assert (run.run_dir / "config.yaml").is_file()
        assert "parade_lightning.cli fit" in (run.run_dir / "command.txt").read_text()


def test_interrupted_run_resumed_from_last_checkpoint(finished):
    run, out = finished["runs"][2], finished["folder"] / "out"
    starts = [e for e in events(out) if e["event"] == "start" and e["index"] == 2]
    assert [s["attempt"] for s in starts] == [1, 2]
    assert starts[0]["resume"] is None and starts[1]["resume"].endswith("last.ckpt")
    log = (run.run_dir / "log.txt").read_text()
    assert f"Restoring states from the checkpoint path at {starts[1]['resume']}" in log
    command = (run.run_dir / "command.txt").read_text()
    assert "# attempt 2 resumed from last.ckpt" in command and "--ckpt_path" in command
    status = json.loads((run.run_dir / "status.json").read_text())
    assert status["status"] == "done" and status["attempts"] == 2


def test_third_run_skips_everything(finished, capsys):
    sweep = load_sweep(finished["config"])
    mtimes = [(r.run_dir / "metrics.json").stat().st_mtime_ns for r in finished["runs"]]
    summary = runner.run_all(sweep, expand(sweep))
    assert summary["counts"]["done"] == 8
    assert mtimes == [(r.run_dir / "metrics.json").stat().st_mtime_ns for r in finished["runs"]]
    assert capsys.readouterr().out.count("done, skipped") == 8


def test_saved_command_and_config_repeat_the_run(finished):
    run = finished["runs"][0]
    config = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert config["seed_everything"] == 1 and config["model"]["backbone"] == "tiny-llama"
    assert config["trainer"]["logger"]["init_args"]["version"] == "lora/default/seed1"
    record = json.loads((run.run_dir / "run.json").read_text())
    assert record["labels"] == {"task": "rte", "method": "lora", "seed": "seed1"}
    assert record["command"] in (run.run_dir / "command.txt").read_text()
    assert "PARADE_SWEEP_TEST=1" in record["command"]
    code = st.code_version(load_sweep(finished["config"]).root)  # None outside a checkout
    assert record["code"] == code
    assert f"; code {code})" in (run.run_dir / "log.txt").read_text()


def test_code_version_names_the_commit_and_a_dirty_tree(tmp_path):
    """run.json's ``code``: which commit a run's code came from, ``+dirty`` if edited."""
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "train.py").write_text("loss = 1\n")
    git("add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert st.code_version(tmp_path) == head[:12]
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert st.code_version(tmp_path) == head[:12]
    (tmp_path / "train.py").write_text("loss = 2\n")
    assert st.code_version(tmp_path) == head[:12] + "+dirty"
    assert st.code_version(tmp_path / "missing") is None


def test_report_matches_the_run_files(finished, tmp_path):
    sweep_main(["report", "--config", str(finished["config"]), "--out", str(tmp_path)])
    with (tmp_path / "table.csv").open() as f:
        cells = list(csv.DictReader(f))
    assert len(cells) == 4  # 2 methods x 2 tasks
    for cell in cells:
        values = [json.loads((r.run_dir / "metrics.json").read_text())
                  for r in finished["runs"] if r.labels["task"] == cell["task"]
                  and r.labels["method"] == {"LoRA": "lora", "(IA)³": "ia3_paper"}[cell["method"]]]
        assert int(cell["n"]) == len(values) == 2
        assert float(cell["median_x100"]) == pytest.approx(
            100 * statistics.median(v["value"] for v in values), abs=1e-4)
        assert int(cell["trainable_parameters"]) == values[0]["trainable_parameters"]
    table = (tmp_path / "table.md").read_text()
    assert "| Method | Tunable Params | RTE (acc) | COPA (acc) |" in table
    assert (tmp_path / "figure.png").read_bytes()[:4] == b"\x89PNG"
    assert "n=2" in (tmp_path / "report.md").read_text()


def test_slurm_script_runs_one_index_per_array_task(finished, tmp_path):
    config = write_sweep(tmp_path, output=str(tmp_path / "fresh"),
                         slurm={"partition": "gpu", "gpus": 1, "time": "02:00:00",
                                "max_parallel": 3, "setup": ["echo setup-line"]})
    sweep_main(["run", "--config", str(config), "--backend", "slurm", "--only", "0-2,5"])
    script = (tmp_path / "fresh" / "slurm" / "tiny.sbatch").read_text()
    for line in ("#SBATCH --array=0-2,5%3", "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1",
                 "#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "#SBATCH --time=02:00:00",
                 f"#SBATCH --output={tmp_path / 'fresh' / 'slurm'}/%A_%a.out",
                 "export PARADE_SWEEP_TEST=1", "echo setup-line", f"cd {ROOT}"):
        assert line in script, line
    assert f"sweep run-one --config {config}" in script
    assert script.rstrip().endswith('--index "$SLURM_ARRAY_TASK_ID"')
    # run it as array task 5 with a stand-in `srun` that prints what it would start
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text('#!/bin/sh\necho "srun $*"\n')
    (fake / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "5"}
    done = subprocess.run(["bash", str(tmp_path / "fresh" / "slurm" / "tiny.sbatch")], env=env,
                          capture_output=True, text=True, check=True)
    assert "run-one" in done.stdout and done.stdout.strip().endswith("--index 5")
    # an array task of a finished run does nothing (skipped) and succeeds
    sweep_main(["run-one", "--config", str(finished["config"]), "--index", "0"])
    assert compress([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


# ---------------------------------------------------------------- reports on known numbers


def fake_run(out: Path, task: str, method: str, seed: int, value: float, params: int,
             class_path: str) -> None:
    run_dir = out / task / method / "default" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({
        "task": task, "metric": "accuracy", "value": value, "trainable_parameters": params,
        "method": {"class_path": class_path, "init_args": {}}}))
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": f"{task}/{method}/default/seed{seed}",
        "labels": {"task": task, "method": method, "seed": f"seed{seed}"}}))


def test_report_marks_best_and_second_and_aggregates(tmp_path):
    values = {("parade", "rte"): [0.60, 0.70, 0.65], ("lora", "rte"): [0.50, 0.55, 0.52],
              ("ia3_paper", "rte"): [0.40, 0.45, 0.41], ("parade", "sst2"): [0.80, 0.90, 0.85],
              ("lora", "sst2"): [0.95, 0.91, 0.93], ("ia3_paper", "sst2"): [0.10, 0.20, 0.30]}
    classes = {"parade": "methods.parade.Parade", "lora": "methods.lora.LoRA",
               "ia3_paper": "methods.ia3.PaperIA3"}
    params = {"parade": 8_940_000, "lora": 9_994_240, "ia3_paper": 9_831_936}
    for (method, task), vals in values.items():
        for seed, value in enumerate(vals, 1):
            fake_run(tmp_path / "runs", task, method, seed, value, params[method],
                     classes[method])
    sweep_main(["report", "--dir", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")])
    table = (tmp_path / "rep" / "table.md").read_text().splitlines()
    assert table[0] == "| Method | Tunable Params | SST-2 (acc) | RTE (acc) |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert rows["PARADE"] == "| PARADE | 8.9M | <u>85.0</u> | **65.0** |"
    assert rows["LoRA"] == "| LoRA | 10.0M | **93.0** | <u>52.0</u> |"
    assert rows["(IA)³"] == "| (IA)³ | 9.8M | 20.0 | 41.0 |"
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "65.0 ± 5.0 (n=3)" in report  # mean and sample std of 60, 70, 65
    sweep_main(["report", "--dir", str(tmp_path / "runs"), "--out", str(tmp_path / "t6"),
                "--layout", "table6", "--no-figure"])
    assert (tmp_path / "t6" / "table.md").read_text().startswith(
        "| Method | SST-2 (acc) | RTE (acc) |")
    assert not (tmp_path / "t6" / "figure.png").exists()


# ---------------------------------------------------------------- sweep files


def test_shipped_sweep_files_expand():
    counts = {"table1.yaml": 7 * 3 * 5, "table6.yaml": 3 * 5 * 5,
              "figure2.yaml": 2 * 3 * 7 * 5, "cpu_smollm2.yaml": 2 * 3 * 2,
              "multi_gpu_llama2_7b.yaml": 7 * 3 * 5, "table7.yaml": 2 * 3 * 3 * 5}
    for name, expected in counts.items():
        sweep = load_sweep(ROOT / "sweeps" / name, root=ROOT)
        assert len(expand(sweep, solve_budgets=False)) == expected, name


def test_bad_sweep_files_are_clear_errors(tmp_path):
    with pytest.raises(SweepError, match="unknown sweep keys"):
        parse_sweep({"axes": {"seed": [1]}, "sedds": [1]}, root=ROOT)
    with pytest.raises(SweepError, match="config file not found"):
        parse_sweep({"axes": {"method": ["nope"]}}, root=ROOT)
    with pytest.raises(SweepError, match="same label"):
        parse_sweep({"axes": {"seed": [1, 1]}}, root=ROOT)
    with pytest.raises(SystemExit):
        sweep_main(["run-one", "--config", str(write_sweep(tmp_path)), "--index", "99"])


def test_axis_kinds_become_overrides_and_run_ids(tmp_path):
    config = write_sweep(tmp_path, axes={
        "task": [{"name": "rte_short", "config": "rte",
                  "overrides": {"data.init_args.max_length": 64}}],
        "method": ["parade"],
        "model.method.init_args.rank": [8],
        "schedule": [{"name": "const", "model.scheduler": "constant", "model.lr": 0.01}],
        "seed": [3]})
    (run,) = expand(load_sweep(config))
    assert run.run_id == "rte_short/parade/rank=8,const/seed3"
    args = run.fit_args()
    assert args[:2] == ["fit", "--config"] and args[2].endswith("base.yaml")
    assert args[4].endswith("configs/methods/parade.yaml")  # {method} before {task}
    assert args[6].endswith("configs/tasks/rte.yaml")
    pairs = dict(zip(args[7::2], args[8::2], strict=True))
    assert pairs["--data.init_args.max_length"] == "64"
    assert pairs["--model.method.init_args.rank"] == "8"
    assert pairs["--model.scheduler"] == "constant" and pairs["--seed_everything"] == "3"
    assert pairs["--trainer.logger.init_args.version"] == "parade/rank=8,const/seed3"
    assert run.run_dir == tmp_path / "out" / "rte_short" / "parade" / "rank=8,const" / "seed3"


def test_run_states_from_the_directory(tmp_path):
    from parade_lightning.sweep import state as st
    from parade_lightning.sweep.runner import _set_aside_checkpoints

    run = tmp_path / "run"
    assert st.run_state(run) == "pending"
    st.set_run_status(run, "failed", attempts=1)
    assert st.run_state(run) == "failed"
    st.set_run_status(run, "running", attempts=2)  # nobody holds the lock: a killed sweep
    assert st.run_state(run) == "interrupted"
    holder = st.RunLock(run)
    assert holder.acquire()
    assert st.run_state(run) == "running" and not st.RunLock(run).acquire()
    holder.release()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert st.run_state(run) == "resumable"
    assert st.resume_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    _set_aside_checkpoints(run, 3)  # what --fresh does
    assert (run / "superseded" / "attempt3" / "checkpoints" / "last.ckpt").is_file()
    assert st.resume_checkpoint(run) is None
    (run / "metrics.json").write_text("{}")
    assert st.run_state(run) == "done"
