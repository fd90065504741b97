"""The quality study's report: ``runs.csv``, ``table.md``, ``comparisons.json`` and a figure.

Given study sweeps (see :mod:`parade_lightning.sweep.study`), per task and method at the rate
chosen on dev: the median and range of the test score over seeds, the dev score the choice was
made on, the trainable parameters; the zero-shot row; paired bootstrap intervals of PARADE
minus each baseline on the same test rows (for an ablation sweep, PARADE's cell comes from the
main study's sweep: :func:`gather`'s ``reference``); a figure of the dev score against the
rate, the dev-loss curves and the test scores over seeds; for a sweep that repeats the study's runs
with more steps, the flattening check (:mod:`parade_lightning.sweep.study_steps`).
:func:`write_summary` gathers several study sweeps into one ``runs.csv``, ``table.md`` and
``summary.png``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from parade_lightning.sweep import state as st
from parade_lightning.sweep import study, study_figures, study_steps
from parade_lightning.sweep.plan import Run

_RUN_COLUMNS = ["task", "method", "seed", "lr", "precision", "phase", "chosen", "steps",
                "trainable_parameters", "metric", "dev_score", "dev_loss", "dev_step",
                "last_eval_step", "dev_loss_curve", "dev_loss_last_change", "test_score",
                "test_rows", "wall_seconds", "attempts", "code", "run_id"]


def _row(run: Run, selection_seed: int, choices: dict) -> dict[str, Any] | None:
    metrics = st.read_json(run.run_dir / st.METRICS)
    if metrics is None:
        return None
    dev = study.dev_score(run.run_dir, metrics["metric"])
    losses = study.curves(run.run_dir).get("val/loss", [])
    status = st.read_json(run.run_dir / st.RUN_STATUS) or {}
    key = (run.labels["task"], run.labels["method"])
    choice = choices.get(key)
    return {
        "task": key[0], "method": key[1], "seed": run.values["seed"].raw,
        "lr": run.overrides.get("model.lr"), "precision": precision(run.run_dir),
        "phase": "selection" if run.values["seed"].raw == selection_seed else "seeds",
        "chosen": bool(choice and study.group_of(run.labels) == choice["group"]),
        "steps": metrics.get("global_step"),
        "trainable_parameters": metrics.get("trainable_parameters"),
        "metric": metrics["metric"], "dev_score": dev.score, "dev_loss": dev.loss,
        "dev_step": dev.step, "last_eval_step": dev.last_step,
        "dev_loss_curve": " ".join(f"{step}:{loss:.4f}" for step, loss in losses),
        "dev_loss_last_change": last_interval_change([loss for _, loss in losses]),
        "test_score": metrics["value"],
        "test_rows": metrics.get("num_examples"), "wall_seconds": wall_seconds(metrics, status),
        "attempts": status.get("attempts"),
        "code": (st.read_json(run.run_dir / st.RUN_RECORD) or {}).get("code"),
        "run_id": run.run_id,
    }


def precision(run_dir: Path) -> str | None:
    """``trainer.precision`` as the run recorded it (its ``config.yaml``); None if unknown."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    value = (config.get("trainer") or {}).get("precision")
    return None if value is None else str(value)


def wall_seconds(metrics: dict[str, Any], status: dict[str, Any]) -> float | None:
    """Fit + test seconds of a run: ``metrics.json``'s Timer figures (a resumed run's fit time
    summed over its attempts), else the sweep's elapsed time when there was a single attempt
    (an interrupted attempt's time is lost), else unknown. A trained run without a fit time
    (resumed at its last step by code before on_fit_end read the Timer) is unknown too."""
    seconds = metrics.get("seconds") or {}
    if seconds.get("test") is not None:
        if seconds.get("fit") is None and metrics.get("global_step"):
            return None
        return round((seconds.get("fit") or 0.0) + seconds["test"], 1)
    return status.get("elapsed_s") if status.get("attempts") == 1 else None


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


def cells(runs: list[Run], rows: list[dict[str, Any]], choices: dict
          ) -> dict[tuple[str, str], tuple[list[dict[int, float]], int]]:
    """``(task, method) -> (per-row test scores of each finished seed at the chosen rate,
    seeds planned there)``."""
    by_id = {r.run_id: r for r in runs}
    planned = Counter((runs[i].labels["task"], runs[i].labels["method"])
                      for i in study.seed_indices(runs, choices))
    scores: dict[tuple[str, str], list[dict[int, float]]] = {}
    for r in rows:
        if r["chosen"]:
            scores.setdefault((r["task"], r["method"]), []).append(
                study.row_scores(by_id[r["run_id"]].run_dir))
    return {key: (cell, planned[key]) for key, cell in scores.items()}


def comparisons(runs: list[Run], rows: list[dict[str, Any]], target: str,
                baselines: list[str], choices: dict,
                reference: dict[tuple[str, str], tuple[list[dict[int, float]], int]] | None = None
                ) -> list[dict[str, Any]]:
    """``target`` minus each baseline per task, on the chosen configurations' seeds. Until
    every planned seed of both cells has finished the comparison is interim: ``complete`` is
    False and nothing is ``called``, whatever the interval (the protocol calls a difference on
    all seeds only). ``reference`` (another study's :func:`cells`) supplies the target's cell
    instead of this sweep: an ablation's variants against the full method of the main study."""
    own = cells(runs, rows, choices)
    targets = own if reference is None else reference
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        if (task, target) not in targets:
            continue
        mine, want_a = targets[(task, target)]
        for base in baselines:
            if (task, base) not in own:
                continue
            theirs, want_b = own[(task, base)]
            result = study.paired_bootstrap(mine, theirs)
            complete = len(mine) >= want_a and len(theirs) >= want_b
            out.append({"task": task, "a": target, "b": base, **result,
                        "seeds_planned_a": want_a, "seeds_planned_b": want_b,
                        "complete": complete, "called": result["called"] and complete})
    return out


def markdown(rows: list[dict[str, Any]], choices: dict, compared: list[dict[str, Any]],
             reference: tuple[str, list[dict[str, Any]], dict] | None = None,
             selection: bool = True) -> str:
    """The headline table (chosen rates, test over seeds), the comparisons, and the rate
    selection on dev with each run's dev-loss curve (whether the loss had flattened).
    ``reference`` (``(sweep name, rows, choices)`` of another study, its target only) puts the
    compared cell of that study first in the headline table, its sweep named beside it."""
    lines = []
    if choices:
        lines += ["| task | method | trainable | lr (chosen on dev) | dev score (seed of choice) "
                  "| test median ×100 | test min–max | seeds | rows |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        if reference is not None:
            name, ref_rows, ref_choices = reference
            lines += _headline_lines(ref_rows, ref_choices, f" (from {name})")
        lines += _headline_lines(rows, choices)
    if compared:
        lines += ["", "| task | comparison | difference ×100 | 95 % interval | called |",
                  "|---|---|---:|---:|---|"]
        for c in compared:
            if not c["complete"]:
                verdict = (f"not yet (interim): seeds {c['seeds_a']} of {c['seeds_planned_a']} "
                           f"({c['a']}), {c['seeds_b']} of {c['seeds_planned_b']} ({c['b']})")
            elif c["called"]:
                verdict = "yes: " + (c["a"] if c["difference"] > 0 else c["b"]) + " better"
            else:
                verdict = "no (interval includes 0)"
            lines.append(f"| {c['task']} | {c['a']} − {c['b']} | {_fmt(c['difference'])} | "
                         f"[{_fmt(c['low'])}, {_fmt(c['high'])}] | {verdict} |")
    if selection:
        lines += _selection_lines(rows, choices)
    return "\n".join(lines).lstrip("\n") + "\n"


def _headline_lines(rows: list[dict[str, Any]], choices: dict, source: str = "") -> list[str]:
    """One headline row per chosen (task, method) with a finished run."""
    lines = []
    for (task, method), choice in choices.items():
        cell = [r for r in rows if r["task"] == task and r["method"] == method and r["chosen"]]
        if not cell:
            continue
        tests = [r["test_score"] for r in cell]
        lr = "–" if cell[0]["steps"] == 0 else f"{cell[0]['lr']:g}"
        lines.append(
            f"| {task} | {method}{source} | {cell[0]['trainable_parameters']:,} | {lr} | "
            f"{_fmt(choice['dev_score'])} | {_fmt(statistics.median(tests))} | "
            f"{_fmt(min(tests))}–{_fmt(max(tests))} | {len(tests)} | {cell[0]['test_rows']} |")
    return lines


def _selection_lines(rows: list[dict[str, Any]], choices: dict) -> list[str]:
    """Phase 1: every trained (task, method, lr) with the selection seed, on dev."""
    picked = sorted((r for r in rows if r["phase"] == "selection" and r["steps"]),
                    key=lambda r: (r["task"], r["method"], r["lr"]))
    if not picked:
        return []
    lines = ["", "Rate selection on dev (selection seed; the tested checkpoint is the one with "
             "the lowest dev loss)" + ("" if choices else ", phase 1 not finished") + ":", "",
             "| task | method | lr | chosen | dev score ×100 | lowest dev loss (step) | "
             "last interval | dev loss at each evaluation (step:loss) |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    changes = []
    for r in picked:
        loss = "–" if r["dev_loss"] is None else f"{r['dev_loss']:.4f} ({r['dev_step']})"
        change = r["dev_loss_last_change"]
        if change is not None:
            changes.append(change)
        last = "–" if change is None else f"{_fmt(change)} %"
        lines.append(f"| {r['task']} | {r['method']} | {r['lr']:g} | "
                     f"{'yes' if r['chosen'] else ''} | {_fmt(r['dev_score'])} | {loss} | "
                     f"{last} | {r['dev_loss_curve'] or '–'} |")
    at_end = sum(r["dev_step"] is not None and r["dev_step"] == r["last_eval_step"]
                 for r in picked)
    lines += ["", "Has the dev loss flattened? "
              + study_steps.flattening_sentence(at_end, len(picked), changes)]
    return lines


def last_interval_change(losses: list[float]) -> float | None:
    """``(last - previous) / previous`` of a dev-loss curve; None under two points."""
    if len(losses) < 2 or losses[-2] == 0:
        return None
    return (losses[-1] - losses[-2]) / losses[-2]


@dataclass
class Study:
    """One study sweep's results, as ``study-report`` writes them and ``study-summary``
    gathers them: every finished run's row, the rates chosen on dev, the paired comparisons
    and, for an ablation, the reference cell taken from another sweep; for a flattening check,
    ``repeats``: ``(the study sweep's name, study_steps.check(...))``."""

    name: str
    rows: list[dict[str, Any]]
    choices: dict
    compared: list[dict[str, Any]]
    reference: tuple[str, list[dict[str, Any]], dict] | None = None
    title: str = ""
    repeats: tuple[str, dict[str, Any]] | None = None


def gather(runs: list[Run], selection_seed: int = 1, target: str = "parade",
           baselines: tuple[str, ...] = ("lora", "ia3_paper"),
           reference: tuple[str, list[Run]] | None = None, name: str = "",
           title: str = "", repeats: tuple[str, list[Run]] | None = None) -> Study:
    """A study's results. ``reference`` (``(sweep name, its runs)``) takes the ``target`` cell
    from another study sweep, at the rate chosen there: an ablation sweep of variants compared
    with the full method of the main study. ``repeats`` (``(sweep name, its runs)``): the study
    sweep whose runs this sweep repeats with more steps (the flattening check)."""
    rows, choices = collect(runs, selection_seed)
    ref_cells, ref_table = None, None
    if reference is not None:
        ref_name, ref_runs = reference
        ref_rows, ref_choices = collect(ref_runs, selection_seed)
        ref_rows = [r for r in ref_rows if r["method"] == target]
        ref_choices = {k: c for k, c in ref_choices.items() if k[1] == target}
        if not ref_choices:
            raise ValueError(f"the reference sweep {ref_name} has no chosen rate for "
                             f"{target!r} (its phase 1 is unfinished, or it has no such method)")
        ref_cells = cells(ref_runs, ref_rows, ref_choices)
        ref_table = (ref_name, ref_rows, ref_choices)
    compared = (comparisons(runs, rows, target, list(baselines), choices, ref_cells)
                if choices else [])
    steps = None
    if repeats is not None:
        short_rows, _ = collect(repeats[1], selection_seed)
        steps = (repeats[0], study_steps.check(runs, rows, repeats[1], short_rows, target,
                                               tuple(baselines)))
    return Study(name, rows, choices, compared, ref_table, title, steps)


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write(runs: list[Run], out: Path, selection_seed: int = 1, target: str = "parade",
          baselines: tuple[str, ...] = ("lora", "ia3_paper"),
          reference: tuple[str, list[Run]] | None = None,
          repeats: tuple[str, list[Run]] | None = None) -> dict[str, Path]:
    """Write the report files into ``out``; returns them by kind (``reference``, ``repeats``:
    see :func:`gather`)."""
    out.mkdir(parents=True, exist_ok=True)
    result = gather(runs, selection_seed, target, baselines, reference, repeats=repeats)
    files = {"runs": out / "runs.csv", "table": out / "table.md",
             "comparisons": out / "comparisons.json"}
    files["runs"].write_text(_csv(result.rows, _RUN_COLUMNS))
    table = markdown(result.rows, result.choices, result.compared, result.reference)
    if steps := _steps_section(result):
        table += "\n" + steps
    files["table"].write_text(table)
    record: dict[str, Any] = {
        "choices": {f"{t}/{m}": c for (t, m), c in result.choices.items()},
        "comparisons": result.compared}
    if result.reference is not None:
        record["reference"] = {"sweep": result.reference[0], "choices": {
            f"{t}/{m}": c for (t, m), c in result.reference[2].items()}}
    if result.repeats is not None:
        record["repeats"] = {"sweep": result.repeats[0], **result.repeats[1]}
    files["comparisons"].write_text(json.dumps(record, indent=2, default=str))
    if study_figures.figure(runs, result.rows, out / "dev_curves.png", selection_seed):
        files["figure"] = out / "dev_curves.png"
    if result.repeats and study_figures.steps_figure(result.repeats[1], out / "flattening.png"):
        files["flattening"] = out / "flattening.png"
    return files


def _steps_section(result: Study) -> str:
    """The flattening check's Markdown under its heading; empty without a finished pair."""
    if result.repeats is None:
        return ""
    name, check = result.repeats
    body = study_steps.markdown(check, name)
    return f"### The flattening check\n\n{body}" if body else ""


def summary_cells(study_: Study) -> dict[str, dict[str, list[float]]]:
    """``task -> method -> test scores ×100`` at the chosen rates, the reference cell first."""
    out: dict[str, dict[str, list[float]]] = {}
    sources = ([(study_.reference[1], " (ref.)")] if study_.reference else []) + [
        (study_.rows, "")]
    for rows, suffix in sources:
        for r in rows:
            if r["chosen"] and r["test_score"] is not None:
                out.setdefault(r["task"], {}).setdefault(r["method"] + suffix, []).append(
                    100 * r["test_score"])
    return out


def write_summary(studies: list[Study], out: Path) -> dict[str, Path]:
    """The whole study in one place: ``runs.csv`` (every finished run of every sweep, the
    sweep named first), ``table.md`` (each sweep's headline table and comparisons; the rate
    selection stays in each sweep's own report) and ``summary.png`` (per sweep and task: the
    test scores at the chosen rates over seeds, and each paired difference with its 95 %
    interval)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"runs": out / "runs.csv", "table": out / "table.md"}
    files["runs"].write_text(_csv([{"sweep": s.name, **r} for s in studies for r in s.rows],
                                  ["sweep", *_RUN_COLUMNS]))
    lines = []
    for s in studies:
        lines += [f"## {s.title or s.name}", ""]
        if (out / s.name / "table.md").is_file():
            lines += [f"Sweep `{s.name}`; its rate selection and dev-loss curves: "
                      f"[`{s.name}/table.md`]({s.name}/table.md).", ""]
        else:
            lines += [f"Sweep `{s.name}`.", ""]
        if not s.rows:
            body = "No run has finished yet."
        else:
            body = (markdown(s.rows, s.choices, s.compared, s.reference, selection=False).strip()
                    or f"No rate chosen yet (phase 1 not finished: {len(s.rows)} runs in).")
            if steps := _steps_section(s):
                body += "\n\n" + steps.rstrip("\n")
        lines += [body, ""]
    files["table"].write_text("\n".join(lines))
    panels = []
    for s in studies:
        for task, methods in summary_cells(s).items():
            metric = next((r["metric"] for r in s.rows if r["task"] == task), "")
            panels.append({
                "title": f"{s.name} · {task}: test {metric} ×100 (median, min–max)",
                "scores": methods,
                "untrained": {r["method"] for r in s.rows if r["task"] == task and not r["steps"]},
                "compared": [c for c in s.compared if c["task"] == task]})
    if study_figures.summary_figure(panels, out / "summary.png"):
        files["figure"] = out / "summary.png"
    return files
