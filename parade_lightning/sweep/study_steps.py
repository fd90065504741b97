"""The flattening check of a quality study: the same runs with more steps.

Issue 17 asks for "steps enough that dev loss flattens — measure it, do not guess". A *repeat*
sweep runs some (task, method, learning rate, seed) of a study sweep again with a larger
``trainer.max_steps`` (its sweep file names the study: ``report: repeats: <sweep file>``, or
``parade sweep study-report --repeats``). :func:`check` pairs each of its finished runs with the
study's run of the same task, method, rate and seed and reports, shorter → longer:

- the lowest dev loss and its step (the tested checkpoint, :func:`study.dev_score`), its relative
  change, and the longer run's change over its last evaluation interval (still falling?);
- the dev score at the tested checkpoint and the test score;
- the test difference longer − shorter, a paired bootstrap over the same test rows
  (:func:`study.paired_bootstrap`; one seed on each side, so rows alone are resampled);
- per task and seed, the target minus each baseline at both lengths: does training longer
  change the study's comparison?

The longer runs' test scores are never used for a choice: they are evidence for or against the
study's step count, not a way to tune it.
"""

from __future__ import annotations

import statistics
from typing import Any

from parade_lightning.sweep import study
from parade_lightning.sweep.plan import Run


def _key(row: dict[str, Any]) -> tuple:
    return row["task"], row["method"], row["seed"], row["lr"]


def check(runs: list[Run], rows: list[dict[str, Any]], short_runs: list[Run],
          short_rows: list[dict[str, Any]], target: str = "parade",
          baselines: tuple[str, ...] = ("lora", "ia3_paper")) -> dict[str, Any]:
    """``{"pairs": [...], "gaps": [...]}``: one pair per trained run of ``rows`` (the repeat
    sweep's :func:`study_report.collect` rows) that has a trained counterpart in
    ``short_rows`` (the study's), every two-element list ordered shorter, longer; ``gaps``
    compares ``target`` with each baseline on the same seed at both lengths."""
    long_dirs = {r.run_id: r.run_dir for r in runs}
    short_dirs = {r.run_id: r.run_dir for r in short_runs}
    shorter = {_key(r): r for r in short_rows if r["steps"]}
    pairs, by_run = [], {}  # (task, method, seed) -> per-row test scores (shorter, longer)
    for r in rows:
        s = shorter.get(_key(r)) if r["steps"] else None
        if s is None:
            continue
        run_dirs = (short_dirs[s["run_id"]], long_dirs[r["run_id"]])
        scores = tuple(study.row_scores(d) for d in run_dirs)  # (shorter, longer)
        diff = study.paired_bootstrap([scores[1]], [scores[0]])
        change = (None if r["dev_loss"] is None or not s["dev_loss"]
                  else (r["dev_loss"] - s["dev_loss"]) / s["dev_loss"])
        pairs.append({
            "task": r["task"], "method": r["method"], "seed": r["seed"], "lr": r["lr"],
            **{name: [s[name], r[name]] for name in (
                "run_id", "precision", "steps", "dev_loss", "dev_step", "dev_score",
                "test_score")},
            "dev_loss_change": change,
            "lowest_at_last_evaluation": r["dev_step"] is not None
            and r["dev_step"] == r["last_eval_step"],
            "last_interval_change": r["dev_loss_last_change"],
            "dev_loss_curves": [study.curves(d).get("val/loss", []) for d in run_dirs],
            **{k: diff[k] for k in ("difference", "low", "high", "rows", "called")}})
        by_run[(r["task"], r["method"], r["seed"])] = scores
    gaps = []
    for (task, method, seed), mine in by_run.items():
        if method != target:
            continue
        for base in baselines:
            theirs = by_run.get((task, base, seed))
            if theirs is None:
                continue
            gaps.append({"task": task, "seed": seed, "a": target, "b": base, **{
                length: study.paired_bootstrap([mine[i]], [theirs[i]])
                for i, length in enumerate(("shorter", "longer"))}})
    return {"pairs": pairs, "gaps": gaps}


def _fmt(value: float | None, scale: float = 100.0) -> str:
    return "–" if value is None else f"{value * scale:.1f}"


def _interval(result: dict[str, Any]) -> str:
    verdict = " (called)" if result["called"] else ""
    return (f"{result['difference'] * 100:+.1f} [{result['low'] * 100:.1f}, "
            f"{result['high'] * 100:.1f}]{verdict}")


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{_fmt(value)} %"


def flattening_sentence(at_end: int, runs: int, changes: list[float], which: str = "") -> str:
    """How many of ``runs`` have their lowest dev loss at the last evaluation, and the spread
    of ``changes`` (each run's relative dev-loss change over its last evaluation interval)."""
    text = f"The lowest dev loss is the last evaluation's in {at_end} of {runs} {which}runs."
    if changes:
        text += (f" Relative change of the dev loss over the last evaluation interval "
                 f"(\"last interval\"): median {_fmt(statistics.median(changes))} %, "
                 f"from {_fmt(min(changes))} % to {_fmt(max(changes))} %.")
    return text


def _loss(loss: float | None, step: int | None) -> str:
    return "–" if loss is None else f"{loss:.4f} ({step})"


def markdown(result: dict[str, Any], study_name: str) -> str:
    """The check as Markdown: the run pairs, whether the longer runs' dev loss has flattened,
    and the method comparisons at both lengths; empty when no pair has finished."""
    pairs = result["pairs"]
    if not pairs:
        return ""
    lines = [f"Against the same runs with fewer steps (sweep `{study_name}`: the same task, "
             "method, learning rate and seed), shorter → longer, ×100 except the losses; the "
             "test difference is longer − shorter, a paired bootstrap over the same test rows "
             "(95 %, called when it excludes 0):", "",
             "| task | method | lr | seed | steps | lowest dev loss (step) | its change | "
             "last interval (longer) | dev score | test | test difference [95 %] |",
             "|---|---|---:|---:|---|---|---:|---:|---|---|---|"]
    for p in pairs:
        both = {name: " → ".join(map(_fmt, p[name])) for name in ("dev_score", "test_score")}
        cells = [p["task"], p["method"], f"{p['lr']:g}", p["seed"],
                 " → ".join(map(str, p["steps"])),
                 " → ".join(map(_loss, p["dev_loss"], p["dev_step"])),
                 _percent(p["dev_loss_change"]), _percent(p["last_interval_change"]),
                 both["dev_score"], both["test_score"], _interval(p)]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    at_end = sum(p["lowest_at_last_evaluation"] for p in pairs)
    changes = [p["last_interval_change"] for p in pairs if p["last_interval_change"] is not None]
    lines += ["", "Has the dev loss flattened by the longer length? "
              + flattening_sentence(at_end, len(pairs), changes, "longer ")]
    mixed = [p for p in pairs if p["precision"][0] != p["precision"][1]]
    if mixed:
        lines += ["", "Precision differs within " + ", ".join(
            f"{p['task']}/{p['method']} ({p['precision'][0]} → {p['precision'][1]})"
            for p in mixed) + "."]
    if result["gaps"]:
        lines += ["", "The comparison at both lengths (the same seed; one seed on each side, "
                  "so rows alone are resampled):", "",
                  "| task | seed | comparison | shorter: difference [95 %] | "
                  "longer: difference [95 %] |", "|---|---:|---|---|---|"]
        lines += [f"| {g['task']} | {g['seed']} | {g['a']} − {g['b']} | "
                  f"{_interval(g['shorter'])} | {_interval(g['longer'])} |"
                  for g in result["gaps"]]
    return "\n".join(lines) + "\n"

