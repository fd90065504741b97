"""Choose on dev, test once: the protocol of a fair, budget-matched quality study.

A study sweep has the axes ``task``, ``method``, a learning-rate axis (``model.lr``) and
``seed``. It runs in two phases (``docs/results/quality/README.md`` has the commands):

1. **selection** — every method x learning rate with one seed (:func:`selection_indices`);
   each method's rate is the one with the best *dev* score (:func:`select`), read at the
   evaluation that the tested checkpoint comes from (the lowest dev loss; ties: lower loss);
2. **seeds** — the other seeds at each chosen rate (:func:`seed_indices`).

The test split is never read for a choice. :func:`paired_bootstrap` compares two methods on the
*same test rows* (each row's score from ``predictions.jsonl``), resampling rows and seeds; a
difference is called only when its 95 % interval excludes zero.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from parade_lightning.sweep import state as st
from parade_lightning.sweep.plan import Run

#: Axes that are not part of a configuration's identity when choosing (a rate is chosen per
#: task and method, over the learning-rate axis, on one seed).
_FIXED = ("task", "method", "seed")


def curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The run's TensorBoard scalars ``val/*`` and ``train/loss``: tag -> [(step, value)].

    Read once per state of the event files (a report asks for the same run several times;
    a run that is still writing its files is read again)."""
    stats = [(f, f.stat()) for f in sorted(run_dir.glob("events.out.tfevents.*"))]
    files = tuple((str(f), info.st_mtime_ns, info.st_size) for f, info in stats)
    return {tag: list(values) for tag, values in _read_curves(files).items()}


@functools.lru_cache(maxsize=512)
def _read_curves(files: tuple[tuple[str, int, int], ...]
                 ) -> dict[str, tuple[tuple[int, float], ...]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for events, _, _ in files:
        acc = EventAccumulator(events, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            if tag.startswith("val/") or tag == "train/loss":
                out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: tuple(sorted(dict(values).items())) for tag, values in out.items()}


@dataclass
class DevScore:
    """The dev numbers a choice is made on."""

    step: int | None  # the evaluation with the lowest dev loss (the tested checkpoint)
    loss: float | None
    score: float | None  # the task metric at that evaluation
    last_step: int | None  # the last evaluation (to see whether the loss had flattened)


def dev_score(run_dir: Path, metric: str) -> DevScore:
    """Dev loss and dev ``metric`` at the evaluation with the lowest dev loss."""
    tags = curves(run_dir)
    losses = tags.get("val/loss", [])
    if not losses:
        return DevScore(None, None, None, None)
    step, loss = min(losses, key=lambda sv: (sv[1], sv[0]))
    scores = dict(tags.get(f"val/{metric}", []))
    return DevScore(step, loss, scores.get(step), losses[-1][0])


def group_of(labels: dict[str, str]) -> str:
    """The non-fixed axis labels of a run (``lr=0.001``), as the reports group them."""
    others = [v for k, v in labels.items() if k not in _FIXED]
    return ",".join(others) if others else "default"


def untrained(run: Run) -> bool:
    """A zero-shot row (``trainer.max_steps: 0``): no training, so no rate or seed matters."""
    return run.overrides.get("trainer.max_steps") == 0


def selection_indices(runs: list[Run], seed: int) -> list[int]:
    """Phase 1: every configuration with the selection seed (a zero-shot row once)."""
    out, zero_shot = [], set()
    for run in runs:
        if run.values["seed"].raw != seed:
            continue
        key = (run.labels["task"], run.labels["method"])
        if untrained(run):
            if key in zero_shot:
                continue
            zero_shot.add(key)
        out.append(run.index)
    return out


def select(runs: list[Run], seed: int, metric_of: dict[str, str] | None = None
           ) -> dict[tuple[str, str], dict[str, Any]]:
    """Each (task, method)'s chosen group: best dev score with ``seed`` (ties: lower dev loss).

    Methods with no dev evaluation (a zero-shot row: no training) keep their only group.
    Raises when a selection run has not finished.
    """
    choices: dict[tuple[str, str], dict[str, Any]] = {}
    chosen = set(selection_indices(runs, seed))
    for run in runs:
        if run.index not in chosen:
            continue
        metrics = st.read_json(run.run_dir / st.METRICS)
        if metrics is None:
            raise ValueError(f"selection run {run.run_id} has not finished "
                             f"({st.run_state(run.run_dir)}); run phase 1 first")
        metric = (metric_of or {}).get(run.labels["task"]) or metrics["metric"]
        dev = dev_score(run.run_dir, metric)
        key = (run.labels["task"], run.labels["method"])
        candidate = {"group": group_of(run.labels), "dev_score": dev.score,
                     "dev_loss": dev.loss, "dev_step": dev.step, "run_id": run.run_id}
        best = choices.get(key)
        rank = (-(dev.score if dev.score is not None else -1.0),
                dev.loss if dev.loss is not None else float("inf"))
        if best is None or rank < best["_rank"]:
            choices[key] = {**candidate, "_rank": rank}
    return {k: {n: v for n, v in c.items() if n != "_rank"} for k, c in choices.items()}


def grid_edges(runs: list[Run], choices: dict[tuple[str, str], dict[str, Any]],
               seed: int, axis: str = "model.lr") -> list[str]:
    """The chosen rates that sit at an edge of their grid (the *edge rule* of
    ``docs/results/quality/README.md``: the next point beyond the edge is run for every method
    before phase 2). One sentence each; empty when every choice is inside its grid."""
    grids: dict[tuple[str, str], set[float]] = {}
    chosen: dict[tuple[str, str], float] = {}
    for run in runs:
        if run.values["seed"].raw != seed or untrained(run) or axis not in run.overrides:
            continue
        key = (run.labels["task"], run.labels["method"])
        grids.setdefault(key, set()).add(run.overrides[axis])
        if key in choices and group_of(run.labels) == choices[key]["group"]:
            chosen[key] = run.overrides[axis]
    out = []
    for key, value in chosen.items():
        grid = sorted(grids[key])
        if len(grid) > 1 and value in (grid[0], grid[-1]):
            where = "top" if value == grid[-1] else "bottom"
            out.append(f"{key[0]}/{key[1]} chose {axis}={value:g}, the {where} of its grid "
                       f"{[float(f'{v:g}') for v in grid]}")
    return out


#: run states a lane may take up (``failed`` runs are left for a person to look at)
STARTABLE = ("pending", "interrupted", "resumable")


def next_run(runs: list[Run], seed: int, allow_edge: bool = False) -> tuple[Run | None, bool]:
    """A study lane's next run: the first startable run of phase 1 (index order), then, once
    every phase-1 run is done and no chosen rate sits at an edge of its grid (or
    ``allow_edge``), of phase 2. Also says whether a run it could have taken is held by
    another process (then there may be work later, when phase 1 completes)."""
    phase1 = selection_indices(runs, seed)
    candidates = [runs[i] for i in phase1]
    states = {run.index: st.run_state(run.run_dir) for run in runs}
    if all(states[i] == "done" for i in phase1):
        choices = select(runs, seed)
        if allow_edge or not grid_edges(runs, choices, seed):
            candidates += [runs[i] for i in seed_indices(runs, choices) if i not in phase1]
    busy = False
    for run in candidates:
        if states[run.index] in STARTABLE:
            return run, busy
        busy = busy or states[run.index] == "running"
    return None, busy


def seed_indices(runs: list[Run], choices: dict[tuple[str, str], dict[str, Any]],
                 trained_only: bool = True) -> list[int]:
    """Phase 2: every seed of each chosen configuration (the selection seed's is done)."""
    out = []
    for run in runs:
        choice = choices.get((run.labels["task"], run.labels["method"]))
        if choice is None or group_of(run.labels) != choice["group"]:
            continue
        if trained_only and untrained(run):
            continue  # zero-shot rows do not depend on the seed
        out.append(run.index)
    return out


def row_scores(run_dir: Path) -> dict[int, float]:
    """Per test row (by its index): the score from ``predictions.jsonl``."""
    scores = {}
    with (run_dir / "predictions.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            scores[int(row["index"])] = float(row["score"])
    return scores


def paired_bootstrap(a: list[dict[int, float]], b: list[dict[int, float]],
                     replicates: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Mean score of ``a`` minus ``b`` (each a list over seeds of row -> score) on their common
    test rows, with a 95 % percentile interval from resampling rows (paired) and seeds."""
    rows = sorted(set.intersection(*(set(s) for s in [*a, *b])))
    if not rows:
        raise ValueError("the two methods share no test rows")
    x = np.array([[s[i] for i in rows] for s in a])  # (seeds_a, rows)
    y = np.array([[s[i] for i in rows] for s in b])
    rng = np.random.default_rng(seed)
    n = len(rows)
    diffs = np.empty(replicates)
    for k in range(replicates):
        idx = rng.integers(0, n, n)
        sa = rng.integers(0, len(x), len(x))
        sb = rng.integers(0, len(y), len(y))
        diffs[k] = x[sa][:, idx].mean() - y[sb][:, idx].mean()
    low, high = np.percentile(diffs, [2.5, 97.5])
    diff = float(x.mean() - y.mean())
    return {"difference": diff, "low": float(low), "high": float(high), "rows": n,
            "seeds_a": len(x), "seeds_b": len(y),
            "called": bool(low > 0 or high < 0)}
