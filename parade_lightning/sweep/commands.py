"""``parade sweep {plan,run,run-one,status,report,budget}`` (see ``docs/sweeps.md``) and the
quality study's ``select``, ``study-run``, ``study-report`` and ``study-summary``
(``docs/results/quality/``)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from parade_lightning.sweep import budget_match as bm
from parade_lightning.sweep import render, runner, slurm, study, study_report
from parade_lightning.sweep import report as rp
from parade_lightning.sweep import state as st
from parade_lightning.sweep.plan import Run, expand
from parade_lightning.sweep.sweep_file import Sweep, SweepError, load_sweep


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parade sweep", description="Grids of ordinary `parade fit` runs: plan, run "
        "(locally or as a SLURM job array), resume, and report in the paper's layouts.")
    sub = parser.add_subparsers(dest="command", required=True)

    def sweep_args(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("--config", required=required, help="the sweep file (sweeps/*.yaml)")
        p.add_argument("--root", help="where runs execute and relative paths resolve "
                       "(default: the sweep file's root:, else the current directory)")
        p.add_argument("--output", help="override the sweep file's output folder")

    p = sub.add_parser("plan", help="list the runs (index, directory, state, budget) only")
    sweep_args(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--commands", action="store_true", help="print each run's command too")

    p = sub.add_parser("run", help="run every unfinished run (or write a SLURM array script)")
    sweep_args(p)
    p.add_argument("--backend", choices=("local", "slurm"), default="local")
    p.add_argument("--only", help="run indices, e.g. 0,3-5 (default: all)")
    p.add_argument("--skip-failed", action="store_true",
                   help="leave runs whose last attempt failed alone (default: retry them)")
    p.add_argument("--fresh", action="store_true",
                   help="start unfinished runs over instead of resuming their checkpoints")
    p.add_argument("--script", help="slurm: where to write the script "
                   "(default: <output>/slurm/<name>.sbatch)")
    p.add_argument("--all", action="store_true", help="slurm: include finished runs too")
    p.add_argument("--submit", action="store_true", help="slurm: also call sbatch")

    p = sub.add_parser("run-one", help="run one run by index (what each SLURM array task does)")
    sweep_args(p)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--fresh", action="store_true")

    p = sub.add_parser("status", help="state of every run (and rewrite <output>/status.json)")
    sweep_args(p)

    p = sub.add_parser("report", help="tables (Markdown, CSV) and figure of finished runs")
    sweep_args(p, required=False)
    p.add_argument("--dir", help="report every run with a metrics.json below this folder")
    p.add_argument("--out", help="report folder (default: <output>/report or <dir>/report)")
    p.add_argument("--layout", choices=("table1", "table6"),
                   help="table1: with a Tunable Params column; table6: without")
    p.add_argument("--digits", type=int, help="decimals of the ×100 numbers (default 1)")
    p.add_argument("--title", help="report title")
    p.add_argument("--no-figure", action="store_true")

    p = sub.add_parser("select", help="a study's two phases: which runs pick each method's "
                       "rate on dev (phase 1), the rate chosen, and the seeds to run (phase 2)")
    sweep_args(p)
    p.add_argument("--seed", type=int, default=1, help="the selection seed (default 1)")
    p.add_argument("--phase", choices=("1", "2"), help="print only that phase's --only list")
    p.add_argument("--allow-edge", action="store_true",
                   help="give phase 2 even when a chosen rate is at an edge of its grid (the "
                        "edge rule otherwise asks for the next point first)")

    p = sub.add_parser("study-run", help="one lane of a study: run its sweeps' next run, one "
                       "at a time (phase 1, then phase 2 once rates are chosen), until none is "
                       "left; start one lane per core")
    p.add_argument("--config", action="append", required=True,
                   help="a study sweep file; repeat it: earlier sweeps go first")
    p.add_argument("--seed", type=int, default=1, help="the selection seed (default 1)")
    p.add_argument("--allow-edge", action="store_true",
                   help="start phase 2 even when a chosen rate is at an edge of its grid")
    p.add_argument("--wait", type=float, default=120.0,
                   help="seconds between looks while only runs held by other lanes remain "
                        "(0: stop instead)")
    p.add_argument("--max-runs", type=int, help="stop after starting this many runs")

    p = sub.add_parser("study-report", help="a study's runs.csv, table.md (median and range "
                       "over seeds at the chosen rate, paired bootstrap) and a figure (dev score "
                       "by rate, dev-loss curves, test scores over seeds)")
    sweep_args(p)
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--seed", type=int, default=1, help="the selection seed (default 1)")
    p.add_argument("--target", help="method label compared (default: the sweep file's "
                   "report: target:, else parade)")
    p.add_argument("--baselines", nargs="*", help="methods the target is compared with "
                   "(default: report: baselines:, else lora ia3_paper)")
    p.add_argument("--reference", metavar="SWEEP",
                   help="another study sweep that holds the --target method: its cell at the "
                        "rate chosen there is compared with this sweep's --baselines (an "
                        "ablation: --reference sweeps/quality_sst2.yaml --baselines parade1 "
                        "parade2 parade3 parade4; default: report: reference:)")
    p.add_argument("--repeats", metavar="SWEEP",
                   help="the study sweep whose runs this sweep repeats with more steps: each "
                        "run is compared with the one of the same task, method, rate and seed "
                        "there (the flattening check: dev loss, dev and test scores, paired "
                        "test difference; default: report: repeats:)")

    p = sub.add_parser("study-summary", help="several study sweeps in one place: runs.csv "
                       "(every finished run), table.md (each sweep's headline table and "
                       "comparisons) and summary.png (test scores over seeds, paired "
                       "differences with their intervals)")
    p.add_argument("--config", action="append", required=True,
                   help="a study sweep file (its report: target/baselines/reference/repeats "
                        "apply); repeat it, in the order the summary shows them")
    p.add_argument("--out", required=True, help="summary folder")
    p.add_argument("--seed", type=int, default=1, help="the selection seed (default 1)")

    p = sub.add_parser("budget", help="solve a method's size for a parameter budget")
    p.add_argument("--backbone", default="smollm2-135m",
                   help=f"a backbone name or a counting preset ({', '.join(bm.PRESETS)})")
    p.add_argument("--method", required=True, help="class path, e.g. methods.LoRA")
    p.add_argument("--init-args", default="{}", help="JSON init_args of the method")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--target", type=float, help="a parameter count")
    group.add_argument("--match", help='JSON method spec, e.g. {"class_path": '
                       '"methods.Parade", "init_args": {"rank": 12}}')
    p.add_argument("--knob", help="the init arg to solve (default: per method)")
    return parser


def parse_indices(text: str | None) -> list[int] | None:
    """``0,3-5`` -> ``[0, 3, 4, 5]``."""
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _load(args: argparse.Namespace) -> tuple[Sweep, list[Run]]:
    sweep = load_sweep(args.config, root=args.root, output=args.output)
    return sweep, expand(sweep)


def _plan(args: argparse.Namespace) -> None:
    sweep, runs = _load(args)
    if args.json:
        print(json.dumps([{**r.record(sweep), "state": st.run_state(r.run_dir),
                           "run_dir": str(r.run_dir)} for r in runs], indent=2, default=str))
        return
    print(f"sweep {sweep.name}: {len(runs)} runs -> {sweep.output}")
    for run in runs:
        solved = ""
        if run.budget:
            b = run.budget
            solved = f"  [{b['knob']}={b['value']}: {b['count']:,} params for {b['target']:,}]"
        print(f"#{run.index:<4} {st.run_state(run.run_dir):<11} {run.run_id}{solved}")
        if args.commands:
            print(f"      {run.command(sweep.root)}")


def _write_plan(sweep: Sweep, runs: list[Run]) -> None:
    st.write_json(sweep.output / "plan.json",
                  {"sweep": sweep.name, "file": str(sweep.path), "root": str(sweep.root),
                   "runs": [{**r.record(sweep), "run_dir": str(r.run_dir)} for r in runs]})


def _run(args: argparse.Namespace) -> int:
    sweep, runs = _load(args)
    _write_plan(sweep, runs)
    indices = parse_indices(args.only)
    if args.backend == "slurm":
        chosen = [r.index for r in runs if (indices is None or r.index in indices)
                  and (args.all or st.run_state(r.run_dir) != "done")]
        text = slurm.sbatch_script(sweep, chosen, Path(args.config).resolve(),
                                   output_override=sweep.output if args.output else None)
        path = Path(args.script) if args.script else sweep.output / "slurm" / f"{sweep.name}.sbatch"
        path.parent.mkdir(parents=True, exist_ok=True)
        (sweep.output / "slurm").mkdir(parents=True, exist_ok=True)  # SLURM's --output folder
        path.write_text(text)
        path.chmod(0o755)
        print(f"wrote {path} ({len(chosen)} array tasks); submit with: sbatch {path}")
        if args.submit:
            if shutil.which("sbatch") is None:
                print("sbatch is not on PATH; not submitted", file=sys.stderr)
                return 1
            return subprocess.call(["sbatch", str(path)])
        return 0
    summary = runner.run_all(sweep, runs, indices=indices, retry_failed=not args.skip_failed,
                             fresh=args.fresh)
    return 0 if summary["counts"]["failed"] == 0 else 1


def _run_one(args: argparse.Namespace) -> int:
    sweep, runs = _load(args)
    if not 0 <= args.index < len(runs):
        raise SweepError(f"--index {args.index} is outside 0..{len(runs) - 1}")
    run = runs[args.index]
    if os.environ.get("SLURM_PROCID", "0") != "0":
        # other ranks of a multi-GPU run: exactly the same command, no bookkeeping (rank 0
        # holds the run's lock and records its state)
        resume = None if args.fresh else st.resume_checkpoint(run.run_dir)
        os.environ.update(run.env)
        os.chdir(sweep.root)
        argv = run.argv(resume)
        os.execv(argv[0], argv)
    outcome = runner.run_one(sweep, run, fresh=args.fresh)
    print(f"#{run.index} {run.run_id}: {json.dumps(outcome, default=str)}")
    st.summarise(sweep.name, sweep.output, runs)
    return 0 if outcome["state"] in ("done", "skipped", "busy") else 1


def _status(args: argparse.Namespace) -> None:
    sweep = load_sweep(args.config, root=args.root, output=args.output)
    runs = expand(sweep, solve_budgets=False)  # states only need the directories
    summary = st.summarise(sweep.name, sweep.output, runs)
    for row in summary["runs"]:
        value = f" {row['value']:.4f}" if row["value"] is not None else ""
        print(f"#{row['index']:<4} {row['state']:<11} {row['run_id']}{value}")
    print(", ".join(f"{k} {v}" for k, v in summary["counts"].items() if v))


def _report(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {}
    if args.config:
        sweep = load_sweep(args.config, root=args.root, output=args.output)
        runs = expand(sweep, solve_budgets=False)
        results = rp.load_results([r.run_dir for r in runs])
        missing = [{"run_id": r.run_id, "state": st.run_state(r.run_dir)} for r in runs
                   if not (r.run_dir / st.METRICS).is_file()]
        options["task_order"] = [v.label for v in sweep.axes.get("task", [])] or None
        out = Path(args.out) if args.out else sweep.output / "report"
        title = args.title or sweep.report.get("title") or f"Sweep {sweep.name}"
        layout = args.layout or sweep.report.get("layout", "table1")
        digits = args.digits if args.digits is not None else sweep.report.get("digits", 1)
    elif args.dir:
        folder = Path(args.dir)
        results, missing = rp.load_results(rp.find_run_dirs(folder)), []
        out = Path(args.out) if args.out else folder / "report"
        title = args.title or f"Runs under {folder}"
        layout, digits = args.layout or "table1", 1 if args.digits is None else args.digits
    else:
        raise SweepError("report needs --config (a sweep file) or --dir (a folder of runs)")
    files = render.write_report(results, out, title, layout=layout, digits=digits,
                                missing=missing, figure=not args.no_figure, **options)
    print((out / "table.md").read_text() if "table" in files else "no finished runs")
    print("\n".join(f"wrote {p}" for p in files.values()))


def _select(args: argparse.Namespace) -> None:
    _, runs = _load(args)
    phase1 = study.selection_indices(runs, args.seed)
    if args.phase == "1":
        print(",".join(map(str, phase1)))
        return
    choices = study.select(runs, args.seed)
    phase2 = [i for i in study.seed_indices(runs, choices) if i not in phase1]
    edges = study.grid_edges(runs, choices, args.seed)
    if args.phase == "2":
        if edges and not args.allow_edge:
            raise ValueError("; ".join(edges) + ": run the next rate beyond it for every method "
                             "of the task first (edge rule), or pass --allow-edge")
        print(",".join(map(str, phase2)))
        return
    for (task, method), c in choices.items():
        print(f"{task}/{method}: {c['group']} (dev {c['dev_score']}, dev loss {c['dev_loss']} "
              f"at step {c['dev_step']}; {c['run_id']})")
    for edge in edges:
        print(f"at an edge: {edge}")
    print(f"phase 2: parade sweep run --config {args.config} --only {','.join(map(str, phase2))}")


def _study_run(args: argparse.Namespace) -> int:
    """Lanes share the run folders' locks, so several can serve the same sweeps. The sweep
    files are read again before each pick, so a rate added to a grid (the edge rule) is taken
    up by running lanes."""
    supervisor, started = runner.Supervisor(), 0
    while args.max_runs is None or started < args.max_runs:
        pick, busy = None, False
        for config in args.config:
            sweep = load_sweep(config)
            runs = expand(sweep)
            run, held = study.next_run(runs, args.seed, args.allow_edge)
            busy = busy or held
            if run is not None:
                pick = (sweep, runs, run)
                break
        if pick is None:
            if busy and args.wait > 0:
                time.sleep(args.wait)
                continue
            print("study-run: nothing left to start (failed runs, if any, are left as they "
                  "are: `parade sweep status`)", flush=True)
            return 0
        sweep, runs, run = pick
        _write_plan(sweep, runs)
        prefix = f"{time.strftime('%H:%M')} {sweep.name} #{run.index} {run.run_id}"
        print(f"{prefix}: starting ({st.run_state(run.run_dir)})", flush=True)
        outcome = runner.run_one(sweep, run, supervisor)
        started += 1
        value = f" value={outcome['value']:.4f}" if outcome.get("value") is not None else ""
        print(f"{prefix}: {outcome['state']}{value}", flush=True)
        st.summarise(sweep.name, sweep.output, runs)
        if supervisor.stop_requested:
            print("study-run: stopping on a signal (start the lane again to go on)", flush=True)
            return 1
    return 0


def _study_options(sweep: Sweep, target: str | None = None, baselines: list[str] | None = None,
                   reference: str | None = None, repeats: str | None = None) -> dict[str, Any]:
    """What a study report compares: the options given, else the sweep file's ``report:``
    keys ``target``, ``baselines``, ``reference`` and ``repeats`` (sweep files, relative to the
    sweep's root), else PARADE against LoRA and (IA)³ within the sweep."""
    target = target or sweep.report.get("target", "parade")
    baselines = baselines or sweep.report.get("baselines") or ["lora", "ia3_paper"]
    return {"target": str(target), "baselines": tuple(map(str, baselines)),
            "reference": _other_sweep(sweep, reference, "reference"),
            "repeats": _other_sweep(sweep, repeats, "repeats")}


def _other_sweep(sweep: Sweep, given: str | None, key: str) -> tuple[str, list[Run]] | None:
    """``(name, runs)`` of the sweep file given as an option, else named by the sweep file's
    ``report:`` ``key`` (relative to its root); None when neither names one."""
    if given:
        other = load_sweep(given)
    elif sweep.report.get(key):
        path = Path(str(sweep.report[key]))
        other = load_sweep(path if path.is_absolute() else sweep.root / path, root=sweep.root)
    else:
        return None
    return other.name, expand(other)


def _study_report(args: argparse.Namespace) -> None:
    sweep, runs = _load(args)
    options = _study_options(sweep, args.target, args.baselines, args.reference, args.repeats)
    try:
        files = study_report.write(runs, Path(args.out), args.seed, **options)
    except ValueError as error:
        raise SystemExit(f"parade sweep study-report: {error}") from None
    print(files["table"].read_text())
    print("\n".join(f"wrote {p}" for p in files.values()))


def _study_summary(args: argparse.Namespace) -> None:
    studies = []
    for config in args.config:
        sweep = load_sweep(config)
        try:
            studies.append(study_report.gather(
                expand(sweep), args.seed, name=sweep.name,
                title=sweep.report.get("title", ""), **_study_options(sweep)))
        except ValueError as error:
            raise SystemExit(f"parade sweep study-summary: {config}: {error}") from None
    files = study_report.write_summary(studies, Path(args.out))
    print(files["table"].read_text())
    print("\n".join(f"wrote {p}" for p in files.values()))


def _budget(args: argparse.Namespace) -> None:
    target: Any = json.loads(args.match) if args.match else args.target
    match = bm.solve(args.backbone, args.method, json.loads(args.init_args), target, args.knob)
    print(json.dumps(match.to_dict(), indent=2, default=str))


def main(argv: list[str]) -> None:
    """Entry point of ``parade sweep …`` (``argv`` without the leading ``sweep``)."""
    args = _parser().parse_args(argv)
    handlers = {"plan": _plan, "run": _run, "run-one": _run_one, "status": _status,
                "report": _report, "budget": _budget, "select": _select,
                "study-run": _study_run, "study-report": _study_report,
                "study-summary": _study_summary}
    try:
        code = handlers[args.command](args)
    except BrokenPipeError:  # `parade sweep plan … | head`: the reader left, not an error
        sys.stdout = open(os.devnull, "w")  # Python flushes stdout at exit: not into the pipe
        return
    except (SweepError, ValueError, FileNotFoundError) as error:
        print(f"parade sweep {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if code:
        raise SystemExit(code)
