"""Aggregating finished runs into the paper's layouts.

Each run contributes its ``metrics.json`` (score, trainable parameters) and its ``run.json``
(the sweep's labels for it). Runs are grouped into *cells*: one row per method (and per value of
any other axis, such as a budget), one column per task, seeds pooled. Seeds are the only thing
pooled: runs of a cell whose saved configurations (``config.yaml``) differ in anything but
``seed_everything``, paths and logging (say ``trainer.max_steps`` or ``model.lr``), or that are
zero-shot (no training step) beside trained ones, become separate rows named by what differs
(``lora (max_steps=10)``, ``lora (zero-shot)``). As in the paper, the
headline number is the **median over seeds ×100**; best per column in **bold**, second best
<u>underlined</u> (ranked on the shown, rounded numbers, so ties look tied). Mean ± std and
the number of seeds per cell are reported beside it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from parade_lightning.sweep import state as st

TASK_NAMES = {"sst2": "SST-2", "rte": "RTE", "qnli": "QNLI", "boolq": "BoolQ", "copa": "COPA",
              "record": "ReCoRD", "squad": "SQuAD", "e2e": "E2E", "gsm8k": "GSM8K",
              "wikisql": "WikiSQL", "alpaca": "Alpaca", "mt_bench": "MT-Bench"}
METRIC_NAMES = {"accuracy": "acc", "f1_em": "f1-em", "rouge_l": "rouge-l",
                "gsm8k_accuracy": "acc", "wikisql_execution": "acc"}
#: The paper's names of the shipped method configs: label -> (class name, display name).
#: A label shows as the paper's name only when its run used that class (a sweep may call
#: anything ``lora``); otherwise the label itself is shown, or the sweep's ``label:``.
METHOD_NAMES = {"parade": ("Parade", "PARADE"), "parade1": ("Parade1", "PARADE-1"),
                "parade2": ("Parade2", "PARADE-2"), "parade3": ("Parade3", "PARADE-3"),
                "parade4": ("Parade4", "PARADE-4"), "lora": ("LoRA", "LoRA"),
                "ia3_paper": ("PaperIA3", "(IA)³"), "ia3": ("IA3", "(IA)³ (PEFT placement)")}


@dataclass
class Result:
    """One finished run."""

    run_id: str
    task: str
    method: str
    group: str
    seed: str
    value: float
    metric: str
    params: int
    run_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cell:
    """The runs of one (row, task) pair."""

    values: list[float]
    params: list[int]

    @property
    def n(self) -> int:
        return len(self.values)

    def stat(self, name: str, scale: float = 100.0) -> float:
        vals = [v * scale for v in self.values]
        if name == "std":
            return statistics.stdev(vals) if len(vals) > 1 else 0.0
        return {"median": statistics.median, "mean": statistics.fmean, "min": min,
                "max": max}[name](vals)


def load_results(run_dirs: list[Path]) -> list[Result]:
    """Results of the given run directories that have a ``metrics.json``."""
    results = []
    for run_dir in run_dirs:
        metrics = st.read_json(run_dir / st.METRICS)
        if metrics is None:
            continue
        record = st.read_json(run_dir / st.RUN_RECORD) or _infer_record(run_dir, metrics)
        labels = record.get("labels") or {}
        others = [v for k, v in labels.items() if k not in ("task", "method", "seed")]
        method = record.get("method_label") or display_method(
            labels.get("method") or _short_method(metrics).lower(), _short_method(metrics))
        results.append(Result(
            run_id=record.get("run_id", str(run_dir)),
            task=str(metrics.get("task") or labels.get("task")),
            method=method,
            group=",".join(others) if others else "default",
            seed=labels.get("seed", "run"), value=float(metrics["value"]),
            metric=str(metrics.get("metric")), params=int(metrics["trainable_parameters"]),
            run_dir=run_dir, extra={"budget": record.get("budget"),
                                    "global_step": metrics.get("global_step"),
                                    "num_examples": metrics.get("num_examples"),
                                    "config": _configuration(run_dir, metrics)},
        ))
    _split_by_configuration(results)
    return results


#: Saved-config keys that do not change what a run measures (besides the seed, pooled).
_NOT_SETTINGS = ("seed_everything", "trainer.logger", "trainer.enable_progress_bar",
                 "trainer.log_every_n_steps", "data.init_args.num_workers", "print_config",
                 "verbose", "return_predictions", "validate_before_fit")


def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for key, value in node.items():
            out |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: json.dumps(node, sort_keys=True, default=str)}


def _configuration(run_dir: Path, metrics: dict[str, Any]) -> dict[str, str]:
    """A run's settings: its ``config.yaml`` flattened to dotted keys, without the seed,
    paths and logging; plus ``zero-shot`` when it took no training step."""
    config = {}
    if (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    flat = {k: v for k, v in _flatten(config).items()
            if not k.startswith(_NOT_SETTINGS) and not k.endswith(("_dir", "_path"))}
    if metrics.get("global_step") == 0:
        flat["zero-shot"] = "true"
    return flat


def _describe(key: str, value: str | None) -> str:
    if key == "zero-shot":
        return "zero-shot" if value else "trained"
    shown = "unset" if value is None else str(json.loads(value))
    if len(shown) > 24:
        shown = "#" + hashlib.sha1(shown.encode()).hexdigest()[:6]
    return f"{key.rsplit('.', 1)[-1]}={shown}"


def _split_by_configuration(results: list[Result]) -> None:
    """Give runs of one cell that differ in more than the seed their own group (row)."""
    cells: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        cells.setdefault((r.task, r.method, r.group), []).append(r)
    for runs in cells.values():
        configs = [r.extra["config"] for r in runs]
        keys = sorted({k for c in configs for k in c})
        differing = [k for k in keys if len({c.get(k) for c in configs}) > 1]
        for r in runs if differing else ():
            label = ",".join(_describe(k, r.extra["config"].get(k)) for k in differing)
            r.group = label if r.group == "default" else f"{r.group},{label}"


def find_run_dirs(folder: Path) -> list[Path]:
    """Every folder below ``folder`` holding a ``metrics.json`` (for ``report --dir``)."""
    return sorted(p.parent for p in folder.rglob(st.METRICS))


def _short_method(metrics: dict[str, Any]) -> str:
    """The class name of the run's method (``LoRA``)."""
    return str((metrics.get("method") or {}).get("class_path", "?")).rsplit(".", 1)[-1]


def _infer_record(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Labels for a run made by hand (no ``run.json``): seed from its saved config."""
    config = {}
    if (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    seed = config.get("seed_everything")
    by_class = {cls: label for label, (cls, _) in METHOD_NAMES.items()}
    class_name = _short_method(metrics)
    return {"run_id": str(run_dir), "labels": {
        "task": metrics.get("task"), "method": by_class.get(class_name, class_name.lower()),
        "seed": f"seed{seed}" if seed is not None else "run"}}


def display_method(label: str, class_name: str | None = None) -> str:
    """The paper's name of a shipped method config (``lora`` -> ``LoRA``), else the label."""
    known = METHOD_NAMES.get(label)
    return known[1] if known and class_name in (None, known[0]) else label


def display_task(task: str, metric: str | None) -> str:
    name = TASK_NAMES.get(task, task)
    return f"{name} ({METRIC_NAMES.get(metric, metric)})" if metric else name


def grid(results: list[Result], task_order: list[str] | None = None,
         row_order: list[tuple[str, str]] | None = None
         ) -> tuple[list[tuple[str, str]], list[str], dict[tuple[str, str, str], Cell]]:
    """``(rows, tasks, cells)``; rows are ``(method, group)``, cells keyed by row + task."""
    cells: dict[tuple[str, str, str], Cell] = {}
    for r in results:
        cell = cells.setdefault((r.method, r.group, r.task), Cell([], []))
        cell.values.append(r.value)
        cell.params.append(r.params)
    rows = _ordered([(r.method, r.group) for r in results], row_order)
    paper = list(TASK_NAMES)
    seen = _ordered([r.task for r in results], None)
    tasks = _ordered(seen, task_order) if task_order else sorted(
        seen, key=lambda t: (paper.index(t) if t in paper else len(paper), t))
    return rows, tasks, cells


def _ordered(items: list, order: list | None) -> list:
    unique = list(dict.fromkeys(items))
    if not order:
        return unique
    rank = {k: i for i, k in enumerate(order)}
    return sorted(unique, key=lambda k: rank.get(k, len(rank)))


def format_params(count: float) -> str:
    """``8.9M`` / ``34.6K`` like the paper's 'Tunable Params' column."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return f"{count:.0f}"


def row_label(method: str, group: str) -> str:
    return method if group == "default" else f"{method} ({group})"


def _marks(column: dict[Any, str]) -> dict[Any, str]:
    """Bold the best shown value of a column and underline the second best."""
    shown = sorted({float(v) for v in column.values()}, reverse=True)
    out = {}
    for key, text in column.items():
        rank = shown.index(float(text))
        out[key] = f"**{text}**" if rank == 0 else f"<u>{text}</u>" if rank == 1 else text
    return out


def markdown_table(results: list[Result], with_params: bool = True, digits: int = 1,
                   task_order: list[str] | None = None,
                   row_order: list[tuple[str, str]] | None = None) -> str:
    """The table 1 (``with_params``) / table 6 layout: median over seeds ×100, marked."""
    rows, tasks, cells = grid(results, task_order, row_order)
    metric = {r.task: r.metric for r in results}
    header = ["Method"] + (["Tunable Params"] if with_params else []) + [
        display_task(t, metric[t]) for t in tasks]
    body: dict[tuple[str, str], list[str]] = {row: [] for row in rows}
    for task in tasks:
        column = {row: f"{cells[(*row, task)].stat('median'):.{digits}f}"
                  for row in rows if (*row, task) in cells}
        marked = _marks(column) if len(column) > 1 else column
        for row in rows:
            body[row].append(marked.get(row, "–"))
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        params = sorted({p for t in tasks if (*row, t) in cells for p in cells[(*row, t)].params})
        shown = [format_params(params[0])] if len(params) == 1 else \
            [f"{format_params(params[0])}–{format_params(params[-1])}"] if params else ["–"]
        lines.append("| " + " | ".join([row_label(*row), *(shown if with_params else []),
                                         *body[row]]) + " |")
    return "\n".join(lines)


def mean_std_table(results: list[Result], digits: int = 1, task_order: list[str] | None = None,
                   row_order: list[tuple[str, str]] | None = None) -> str:
    """Mean ± sample std over seeds ×100 and the number of seeds, per cell."""
    rows, tasks, cells = grid(results, task_order, row_order)
    metric = {r.task: r.metric for r in results}
    lines = ["| Method | " + " | ".join(display_task(t, metric[t]) for t in tasks) + " |",
             "|---|" + "---:|" * len(tasks)]
    for row in rows:
        out = []
        for task in tasks:
            cell = cells.get((*row, task))
            out.append("–" if cell is None else f"{cell.stat('mean'):.{digits}f} ± "
                       f"{cell.stat('std'):.{digits}f} (n={cell.n})")
        lines.append("| " + " | ".join([row_label(*row), *out]) + " |")
    return "\n".join(lines)


def cells_csv(results: list[Result], task_order: list[str] | None = None,
              row_order: list[tuple[str, str]] | None = None) -> str:
    """One line per cell: statistics ×100, the seed values ×100 and the parameter count."""
    rows, tasks, cells = grid(results, task_order, row_order)
    metric = {r.task: r.metric for r in results}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "group", "label", "task", "metric", "n", "median_x100",
                     "mean_x100", "std_x100", "min_x100", "max_x100", "trainable_parameters",
                     "values_x100"])
    for row in rows:
        for task in tasks:
            cell = cells.get((*row, task))
            if cell is None:
                continue
            writer.writerow([*row, row_label(*row), task, metric[task], cell.n,
                             *(f"{cell.stat(s):.4f}" for s in
                               ("median", "mean", "std", "min", "max")),
                             int(statistics.median(cell.params)),
                             ";".join(f"{v * 100:.4f}" for v in cell.values)])
    return out.getvalue()


def runs_csv(results: list[Result]) -> str:
    """One line per run (the raw numbers behind every cell)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run_id", "task", "method", "group", "seed", "metric", "value",
                     "trainable_parameters", "global_step", "num_examples", "budget_knob",
                     "budget_value", "budget_target"])
    for r in results:
        b = r.extra.get("budget") or {}
        writer.writerow([r.run_id, r.task, r.method, r.group, r.seed, r.metric,
                         f"{r.value:.6f}", r.params, r.extra.get("global_step"),
                         r.extra.get("num_examples"), b.get("knob"), b.get("value"),
                         b.get("target")])
    return out.getvalue()
