"""Handing a sweep to SLURM: an ``sbatch``-ready job-array script, one array task per run.

Each array task runs ``parade sweep run-one --config <sweep> --index $SLURM_ARRAY_TASK_ID``,
i.e. the same bookkeeping as a local sweep (skip if done, resume from the newest checkpoint,
record failures). The scheduler queues, places and retries; nothing is scheduled here.

Lightning understands the SLURM environment of each task (``SLURMEnvironment``: ranks, nodes,
devices from ``srun``). With ``--signal=SIGUSR1@90`` Lightning saves an ``hpc_ckpt_*.ckpt``
before the time limit and requeues the task (``auto_requeue``); the requeued ``run-one``
resumes from that checkpoint. Sweep-file keys (``slurm:``)::

    slurm:
      partition: gpu          # --partition
      time: "24:00:00"        # --time per run
      gpus: 1                 # GPUs per run: --gres=gpu:N and --ntasks-per-node=N (one rank
                              # per GPU); set overrides trainer.devices: N to match
      nodes: 1                # --nodes (set trainer.num_nodes to match)
      cpus_per_task: 8
      mem: 64G
      account: null
      qos: null
      max_parallel: null      # --array=…%N
      signal: SIGUSR1@90      # null: no requeue signal
      setup: [source .venv/bin/activate]   # shell lines before the run
      extra: ["--constraint=a100"]         # more #SBATCH options
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from parade_lightning.sweep.sweep_file import Sweep

_KNOWN = {"partition", "time", "gpus", "nodes", "cpus_per_task", "mem", "account", "qos",
          "max_parallel", "signal", "setup", "extra", "job_name"}


def compress(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``0-2,5,7-8`` (SLURM's ``--array`` syntax)."""
    parts: list[str] = []
    values = sorted(set(indices))
    start = prev = None
    for i in [*values, None]:
        if start is not None and (i is None or i != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ",".join(parts)


def sbatch_script(sweep: Sweep, indices: list[int], sweep_file: Path,
                  options: dict[str, Any] | None = None, python: str | None = None,
                  output_override: Path | None = None) -> str:
    """The job-array script for the given run indices (not submitted)."""
    opts = {**sweep.slurm, **(options or {})}
    unknown = sorted(set(opts) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown slurm options {unknown}; known: {sorted(_KNOWN)}")
    if not indices:
        raise ValueError("no runs to submit (all done?)")
    gpus = int(opts.get("gpus") or 0)
    array = compress(indices)
    if opts.get("max_parallel"):
        array += f"%{int(opts['max_parallel'])}"
    logs = sweep.output / "slurm"
    lines = [
        "#!/bin/bash",
        f"# SLURM job array for sweep '{sweep.name}': array task i runs run #i of",
        f"#   {sweep_file}",
        "# (`parade sweep plan --config …` lists them). Submit with: sbatch <this file>",
        f"#SBATCH --job-name={opts.get('job_name') or 'parade-' + sweep.name}",
        f"#SBATCH --array={array}",
        f"#SBATCH --output={logs}/%A_%a.out",
        f"#SBATCH --nodes={int(opts.get('nodes') or 1)}",
        f"#SBATCH --ntasks-per-node={max(gpus, 1)}",
    ]
    for key, flag in (("partition", "partition"), ("time", "time"), ("account", "account"),
                      ("qos", "qos"), ("cpus_per_task", "cpus-per-task"), ("mem", "mem")):
        if opts.get(key) is not None:
            lines.append(f"#SBATCH --{flag}={opts[key]}")
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    signal = opts.get("signal", "SIGUSR1@90")
    if signal:
        lines += [f"#SBATCH --signal={signal}", "#SBATCH --requeue"]
    lines += [f"#SBATCH {e}" for e in opts.get("extra") or []]
    run_one = [python or sys.executable, "-m", "parade_lightning.cli", "sweep", "run-one",
               "--config", str(sweep_file), "--root", str(sweep.root)]
    if output_override is not None:
        run_one += ["--output", str(output_override)]
    lines += ["", "set -euo pipefail", f"mkdir -p {shlex.quote(str(logs))}",
              f"cd {shlex.quote(str(sweep.root))}", *(opts.get("setup") or [])]
    if opts.get("cpus_per_task") is not None:  # srun no longer inherits it (SLURM >= 22.05)
        lines.append('export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"')
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sweep.env.items()]
    lines += ["", "# one srun task per GPU of the run; Lightning reads SLURM_PROCID & co.",
              "srun " + " ".join(shlex.quote(a) for a in run_one)
              + ' --index "$SLURM_ARRAY_TASK_ID"', ""]
    return "\n".join(lines)
