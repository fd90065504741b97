"""The quality study's report: ``runs.csv``, ``table.md``, ``comparisons.json`` and a figure.

Given study sweeps (see :mod:`parade_lightning.sweep.study`), per task and method at the rate
chosen on dev: the median and range of the test score over seeds, the dev score the choice was
made on, the trainable parameters; the zero-shot row; paired bootstrap intervals of PARADE
minus each baseline on the same test rows; dev curves of every chosen configuration.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

from parade_lightning.sweep import state as st
from parade_lightning.sweep import study
from parade_lightning.sweep.plan import Run

_RUN_COLUMNS = ["task", "method", "seed", "lr", "phase", "chosen", "steps",
                "trainable_parameters", "metric", "dev_score", "dev_loss", "dev_step",
                "last_eval_step", "test_score", "test_rows", "wall_seconds", "run_id"]


def _row(run: Run, selection_seed: int, choices: dict) -> dict[str, Any] | None:
    metrics = st.read_json(run.run_dir / st.METRICS)
    if metrics is None:
        return None
    dev = study.dev_score(run.run_dir, metrics["metric"])
    status = st.read_json(run.run_dir / st.RUN_STATUS) or {}
    key = (run.labels["task"], run.labels["method"])
    choice = choices.get(key)
    return {
        "task": key[0], "method": key[1], "seed": run.values["seed"].raw,
        "lr": run.overrides.get("model.lr"),
        "phase": "selection" if run.values["seed"].raw == selection_seed else "seeds",
        "chosen": bool(choice and study.group_of(run.labels) == choice["group"]),
        "steps": metrics.get("global_step"),
        "trainable_parameters": metrics.get("trainable_parameters"),
        "metric": metrics["metric"], "dev_score": dev.score, "dev_loss": dev.loss,
        "dev_step": dev.step, "last_eval_step": dev.last_step, "test_score": metrics["value"],
        "test_rows": metrics.get("num_examples"), "wall_seconds": status.get("elapsed_s"),
        "run_id": run.run_id,
    }


def collect(runs: list[Run], selection_seed: int) -> tuple[list[dict[str, Any]], dict]:
    """Rows of every finished run, and the choices (empty while phase 1 is unfinished)."""
    try:
        choices = study.select(runs, selection_seed)
    except ValueError:
        choices = {}
    rows = [r for run in runs if (r := _row(run, selection_seed, choices)) is not None]
    return rows, choices


def _fmt(value: float | None, scale: float = 100.0, digits: int = 1) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def comparisons(runs: list[Run], rows: list[dict[str, Any]], target: str,
                baselines: list[str]) -> list[dict[str, Any]]:
    """``target`` minus each baseline per task, on the chosen configurations' seeds."""
    by_id = {r.run_id: r for r in runs}
    out = []
    def scores(task: str, method: str) -> list[dict[int, float]]:
        return [study.row_scores(by_id[r["run_id"]].run_dir) for r in rows
                if r["task"] == task and r["method"] == method and r["chosen"]]

    for task in dict.fromkeys(r["task"] for r in rows):
        mine = scores(task, target)
        for base in baselines:
            theirs = scores(task, base)
            if mine and theirs:
                result = study.paired_bootstrap(mine, theirs)
                out.append({"task": task, "a": target, "b": base, **result})
    return out


def markdown(rows: list[dict[str, Any]], choices: dict, compared: list[dict[str, Any]]) -> str:
    lines = ["| task | method | trainable | lr (chosen on dev) | dev score (seed of choice) | "
             "test median ×100 | test min–max | seeds | rows |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (task, method), choice in choices.items():
        cell = [r for r in rows if r["task"] == task and r["method"] == method and r["chosen"]]
        if not cell:
            continue
        tests = [r["test_score"] for r in cell]
        lr = "–" if cell[0]["steps"] == 0 else f"{cell[0]['lr']:g}"
        lines.append(
            f"| {task} | {method} | {cell[0]['trainable_parameters']:,} | {lr} | "
            f"{_fmt(choice['dev_score'])} | {_fmt(statistics.median(tests))} | "
            f"{_fmt(min(tests))}–{_fmt(max(tests))} | {len(tests)} | {cell[0]['test_rows']} |")
    if compared:
        lines += ["", "| task | comparison | difference ×100 | 95 % interval | called |",
                  "|---|---|---:|---:|---|"]
        for c in compared:
            verdict = ("yes: " + (c["a"] if c["difference"] > 0 else c["b"]) + " better") \
                if c["called"] else "no (interval includes 0)"
            lines.append(f"| {c['task']} | {c['a']} − {c['b']} | {_fmt(c['difference'])} | "
                         f"[{_fmt(c['low'])}, {_fmt(c['high'])}] | {verdict} |")
    return "\n".join(lines) + "\n"


def figure(runs: list[Run], rows: list[dict[str, Any]], path: Path, selection_seed: int) -> bool:
    """Dev score curves of every chosen configuration (selection seed), one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_id = {r.run_id: r for r in runs}
    chosen = [r for r in rows if r["chosen"] and r["seed"] == selection_seed and r["steps"]]
    tasks = list(dict.fromkeys(r["task"] for r in chosen))
    if not tasks:
        return False
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in chosen if r["task"] == task):
            curve = study.curves(by_id[r["run_id"]].run_dir).get(f"val/{r['metric']}", [])
            if curve:
                ax.plot(*zip(*curve, strict=True), marker="o", label=f"{r['method']} "
                        f"(lr {r['lr']:g})")
        ax.set_title(f"{task}: dev {chosen[0]['metric']} (seed {selection_seed})")
        ax.set_xlabel("optimisation step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write(runs: list[Run], out: Path, selection_seed: int = 1, target: str = "parade",
          baselines: tuple[str, ...] = ("lora", "ia3_paper")) -> dict[str, Path]:
    """Write the report files into ``out``; returns them by kind."""
    out.mkdir(parents=True, exist_ok=True)
    rows, choices = collect(runs, selection_seed)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, _RUN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files = {"runs": out / "runs.csv", "table": out / "table.md",
             "comparisons": out / "comparisons.json"}
    files["runs"].write_text(buffer.getvalue())
    compared = comparisons(runs, rows, target, list(baselines)) if choices else []
    files["table"].write_text(markdown(rows, choices, compared))
    files["comparisons"].write_text(json.dumps(
        {"choices": {f"{t}/{m}": c for (t, m), c in choices.items()}, "comparisons": compared},
        indent=2, default=str))
    if figure(runs, rows, out / "dev_curves.png", selection_seed):
        files["figure"] = out / "dev_curves.png"
    return files
