"""The quality study's figures (:mod:`parade_lightning.sweep.study_report` writes them):
per sweep, the rate choice, the dev-loss curves and the test scores over seeds
(``dev_curves.png``); for the summary of several sweeps, the test scores beside every paired
difference with its interval (``summary.png``); for a flattening check, the dev-loss curves of
the shorter and the longer runs (``flattening.png``)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from parade_lightning.sweep import study
from parade_lightning.sweep.plan import Run

#: one colour family per method (in order of appearance), a darker shade per higher rate
METHOD_COLOURS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys", "YlOrBr", "PuRd")


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (imported when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Lay out, write (the folder made if needed) and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def method_colourmaps(methods: list[str]) -> dict[str, Any]:
    """``method -> colour map``, one family per method in order of appearance (up to 8)."""
    from matplotlib import colormaps

    return {m: colormaps[METHOD_COLOURS[i % len(METHOD_COLOURS)]] for i, m in enumerate(methods)}


def line_colours(rows: list[dict[str, Any]]) -> dict[str, tuple[float, ...]]:
    """``run_id -> RGBA``: the method picks the family, the rate's rank within the method the
    shade, so no two configurations of a panel share a colour (up to 8 methods)."""
    families = method_colourmaps(list(dict.fromkeys(r["method"] for r in rows)))
    out = {}
    for method, cmap in families.items():
        rates = sorted({r["lr"] for r in rows if r["method"] == method})
        for r in rows:
            if r["method"] == method:
                rank = rates.index(r["lr"])
                out[r["run_id"]] = cmap(0.45 + 0.5 * rank / max(len(rates) - 1, 1))
    return out


def figure_data(rows: list[dict[str, Any]], selection_seed: int) -> dict[str, dict[str, Any]]:
    """Per task, what the figure's two score panels show (scores ×100):

    ``rates[method]``: ``(lr, dev score, chosen)`` of every trained selection run, by rate (the
    rate choice; with ``model.dev_generation: tested`` a run has one dev score, so this works for
    every study); ``tests[method]``: the test scores at the chosen rate over seeds (the zero-shot
    row included), from which the panel draws the median and the range."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        task = out.setdefault(r["task"], {"metric": r["metric"], "rates": {}, "tests": {}})
        if r["seed"] == selection_seed and r["steps"] and r["dev_score"] is not None:
            task["rates"].setdefault(r["method"], []).append(
                (r["lr"], 100 * r["dev_score"], r["chosen"]))
        if r["chosen"] and r["test_score"] is not None:
            task["tests"].setdefault(r["method"], []).append(100 * r["test_score"])
    for task in out.values():
        for points in task["rates"].values():
            points.sort()
    return out


def figure(runs: list[Run], rows: list[dict[str, Any]], path: Path, selection_seed: int) -> bool:
    """One row of three panels per task: the dev score of every selection run against its rate
    (the choice, starred), the dev loss of every selection run (has it flattened?), and the
    test score at each chosen rate (median, min–max over seeds, one dot per seed; the zero-shot
    row in the axis label, since its score would squash the axis)."""
    plt = _pyplot()
    by_id = {r.run_id: r for r in runs}
    data = figure_data(rows, selection_seed)
    trained = [r for r in rows if r["seed"] == selection_seed and r["steps"]]
    tasks = list(dict.fromkeys(r["task"] for r in trained))
    if not tasks:
        return False
    fig, axes = plt.subplots(len(tasks), 3, figsize=(16, 3.8 * len(tasks)), squeeze=False)
    for (rate_ax, loss_ax, test_ax), task in zip(axes, tasks, strict=True):
        mine, panels = [r for r in trained if r["task"] == task], data[task]
        colours = line_colours(mine)
        methods = list(dict.fromkeys(r["method"] for r in rows if r["task"] == task))
        # one shade per method for the score panels (the zero-shot row included)
        shade = {m: cmap(0.45) for m, cmap in method_colourmaps(methods).items()}
        for r in mine:
            tags = study.curves(by_id[r["run_id"]].run_dir)
            if tags.get("val/loss"):
                loss_ax.plot(*zip(*tags["val/loss"], strict=True), marker=".",
                             label=f"{r['method']} (lr {r['lr']:g})", color=colours[r["run_id"]],
                             linestyle="-" if r["chosen"] else ":")
        untrained = {r["method"] for r in rows if r["task"] == task and not r["steps"]}
        trained_methods = [m for m in methods if m not in untrained]
        for method in methods:
            points = panels["rates"].get(method, [])
            colour = shade[method]
            if points:
                rate_ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                             color=colour, label=method)
                rate_ax.plot([p[0] for p in points if p[2]], [p[1] for p in points if p[2]],
                             marker="*", markersize=14, linestyle="", color=colour)
            scores = panels["tests"].get(method)
            if scores and method in untrained:  # the zero-shot row, far below: in the axis
                test_ax.set_xlabel(f"{method}: {statistics.median(scores):.1f}")  # label, not a
                # point that would squash the axis
            elif scores:
                median, index = statistics.median(scores), trained_methods.index(method)
                test_ax.errorbar(index, median, yerr=[[median - min(scores)],
                                                      [max(scores) - median]],
                                 color=colour, marker="_", markersize=20, capsize=5)
                test_ax.plot([index] * len(scores), scores, ".", color="black", markersize=5)
        rate_ax.set_xscale("log")
        rate_ax.set_xlabel("learning rate")
        rate_ax.set_title(f"{task}: dev {panels['metric']} ×100 by rate (seed {selection_seed}, "
                          "★ chosen)")
        loss_ax.set_title(f"{task}: dev loss, every rate (chosen: solid; log scale)")
        loss_ax.set_yscale("log")  # a diverged rate's curve would flatten the others
        loss_ax.set_xlabel("optimisation step")
        test_ax.set_xticks(range(len(trained_methods)), trained_methods)
        test_ax.set_xlim(-0.5, len(trained_methods) - 0.5)
        test_ax.set_title(f"{task}: test {panels['metric']} ×100 at the chosen rates, "
                          "over seeds")
        if not panels["tests"]:
            test_ax.text(0.5, 0.5, "no rate chosen yet (phase 1 not finished)",
                         ha="center", va="center", transform=test_ax.transAxes)
        for ax in (rate_ax, loss_ax):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    _save(fig, path)
    return True


def summary_figure(panels: list[dict[str, Any]], path: Path) -> bool:
    """One row of two panels per sweep and task (``panels``: ``title``, ``scores`` method ->
    test scores ×100, ``untrained`` methods, ``compared`` comparisons): the test score of each
    method at its chosen rate (median, min–max over seeds, one dot per seed; the zero-shot row
    in the axis label) and each paired difference with its 95 % bootstrap interval (filled:
    called; hollow: not called or interim)."""
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 2, figsize=(13, 3.4 * len(panels)), squeeze=False)
    for (score_ax, diff_ax), panel in zip(axes, panels, strict=True):
        methods, untrained = panel["scores"], panel["untrained"]
        trained = [m for m in methods if m not in untrained]
        for i, method in enumerate(trained):
            scores = methods[method]
            median = statistics.median(scores)
            score_ax.errorbar(i, median, yerr=[[median - min(scores)], [max(scores) - median]],
                              marker="_", markersize=20, capsize=5)
            score_ax.plot([i] * len(scores), scores, ".", color="black", markersize=5)
        score_ax.set_xticks(range(len(trained)), trained, fontsize=8)
        score_ax.set_xlim(-0.5, len(trained) - 0.5)
        score_ax.set_title(panel["title"], fontsize=9)
        zero = [f"{m}: {statistics.median(methods[m]):.1f}" for m in methods if m in untrained]
        if zero:
            score_ax.set_xlabel("; ".join(zero))
        mine = panel["compared"]
        for i, c in enumerate(mine):
            x, low, high = 100 * c["difference"], 100 * c["low"], 100 * c["high"]
            diff_ax.errorbar(x, i, xerr=[[x - low], [high - x]], marker="o", capsize=4,
                             color="black", markerfacecolor="black" if c["called"] else "white")
        diff_ax.axvline(0, color="grey", linewidth=0.8)
        diff_ax.set_yticks(range(len(mine)), [
            f"{c['a']} − {c['b']}" + ("" if c["complete"] else " (interim)") for c in mine],
            fontsize=8)
        diff_ax.set_ylim(-0.5, max(len(mine), 1) - 0.5)
        diff_ax.set_title("paired difference ×100, 95 % interval (filled: called)", fontsize=9)
    _save(fig, path)
    return True


def steps_figure(result: dict[str, Any], path: Path) -> bool:
    """The flattening check (:func:`study_steps.check`): the dev-loss curves of each pair's
    shorter (dashed) and longer (solid) run, one panel per task (``flattening.png``); False
    (nothing written) when no pair has finished."""
    pairs = result["pairs"]
    if not pairs:
        return False
    plt = _pyplot()
    tasks = list(dict.fromkeys(p["task"] for p in pairs))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for colour, p in enumerate([q for q in pairs if q["task"] == task]):
            label = f"{p['method']} lr {p['lr']:g} seed {p['seed']}"
            for curve, style, steps in zip(p["dev_loss_curves"], ("--", "-"), p["steps"],
                                           strict=True):
                if curve:
                    xs, ys = zip(*curve, strict=True)
                    ax.plot(xs, ys, style, color=f"C{colour}", marker=".",
                            label=f"{label}, {steps} steps")
        ax.set_title(f"{task}: dev loss, shorter (dashed) and longer (solid) runs")
        ax.set_xlabel("step")
        ax.set_ylabel("dev loss")
        ax.legend(fontsize="small")
    _save(fig, path)
    return True
