"""Writing a sweep report: Markdown and CSV tables, and figure-2-style plots (PNG).

Files in the report folder:

* ``report.md``: the main table (table 1 layout, or table 6 with ``layout: table6``), the
  mean ± std table, the figure, and which runs are missing or failed;
* ``table.md`` / ``table.csv``: the main table alone / every cell's statistics (×100);
* ``runs.csv``: one line per finished run (the numbers behind every cell);
* ``figure.png``: score (median over seeds, bars from min to max) against trainable
  parameters, one line per method and one panel per task, as figure 2.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from parade_lightning.sweep import report as rp


def budget_figure(results: list[rp.Result], path: Path, task_order: list[str] | None = None,
                  title: str | None = None) -> Path:
    """Plot score ×100 against trainable parameters (log scale), per method, per task."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    _, tasks, _ = rp.grid(results, task_order)
    metric = {r.task: r.metric for r in results}
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        methods = list(dict.fromkeys(r.method for r in results if r.task == task))
        for method in methods:
            points: dict[int, list[float]] = {}
            for r in results:
                if r.task == task and r.method == method:
                    points.setdefault(r.params, []).append(100 * r.value)
            xs = sorted(points)
            ys = [statistics.median(points[x]) for x in xs]
            low = [y - min(points[x]) for x, y in zip(xs, ys, strict=True)]
            high = [max(points[x]) - y for x, y in zip(xs, ys, strict=True)]
            ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3,
                        label=method)
        counts = [r.params for r in results if r.task == task]
        if max(counts) >= 3 * min(counts):  # budgets spanning a range: log x, as figure 2
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: rp.format_params(x)))
        else:  # close counts: linear x, few ticks, enough digits to tell them apart
            scale, unit = (1e6, "M") if max(counts) >= 1e6 else (1e3, "K")
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(FuncFormatter(
                lambda x, _, scale=scale, unit=unit: f"{x / scale:.2f}{unit}"))
        ax.margins(x=0.15)
        ax.set_xlabel("tunable parameters")
        ax.set_ylabel(f"score ×100 ({rp.METRIC_NAMES.get(metric[task], metric[task])})")
        ax.set_title(rp.TASK_NAMES.get(task, task))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: list[rp.Result], out: Path, title: str,
                 layout: str = "table1", digits: int = 1,
                 task_order: list[str] | None = None,
                 row_order: list[tuple[str, str]] | None = None,
                 missing: list[dict[str, Any]] | None = None,
                 figure: bool = True) -> dict[str, Path]:
    """Write every report file into ``out``; returns their paths by kind."""
    if layout not in ("table1", "table6"):
        raise ValueError(f"layout must be 'table1' or 'table6', got {layout!r}")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if not results:
        (out / "report.md").write_text(f"# {title}\n\nNo finished runs yet.\n")
        return {"report": out / "report.md"}
    order = {"task_order": task_order, "row_order": row_order}
    main = rp.markdown_table(results, with_params=layout == "table1", digits=digits, **order)
    files["table"] = out / "table.md"
    files["table"].write_text(main + "\n")
    files["csv"] = out / "table.csv"
    files["csv"].write_text(rp.cells_csv(results, **order))
    files["runs"] = out / "runs.csv"
    files["runs"].write_text(rp.runs_csv(results))
    seeds = sorted({r.seed for r in results})
    lines = [f"# {title}", "",
             f"Median over seeds ({len(seeds)} seed label(s): {', '.join(seeds)}) ×100; best "
             "in **bold**, second <u>underlined</u>. Tunable Params: trainable parameters "
             "as counted by `parameter_budget` (all adapter parameters).", "", main, "",
             "## Mean ± std over seeds (×100, n = seeds per cell)", "",
             rp.mean_std_table(results, digits=digits, **order), ""]
    if figure:
        try:
            files["figure"] = budget_figure(results, out / "figure.png", task_order, title)
            lines += ["## Score vs tunable parameters", "", "![figure](figure.png)", ""]
        except ImportError:  # matplotlib is the optional `plots` extra
            lines += ["(figure skipped: matplotlib is not installed)", ""]
    budgets = [r for r in results if r.extra.get("budget")]
    if budgets:
        lines += ["## Budget matching", "", "| run | knob | value | count | target | error |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in budgets:
            b = r.extra["budget"]
            lines.append(f"| {r.run_id} | {b['knob']} | {b['value']} | {b['count']:,} | "
                         f"{b['target']:,} | {100 * b['relative_error']:+.2f} % |")
        lines.append("")
    if missing:
        lines += [f"## Runs without results ({len(missing)})", "", "| run | state |", "|---|---|"]
        lines += [f"| {m['run_id']} | {m['state']} |" for m in missing]
        lines.append("")
    files["report"] = out / "report.md"
    files["report"].write_text("\n".join(lines))
    return files
