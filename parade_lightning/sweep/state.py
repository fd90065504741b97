"""Where each run stands, read from its directory (the filesystem is the only source of truth).

* ``metrics.json`` present: **done** (never run again).
* a full checkpoint present (``checkpoints/last.ckpt`` or a SLURM ``hpc_ckpt_*.ckpt``) and no
  metrics: **resumable**; the next attempt passes ``--ckpt_path`` to it.
* ``status.json`` of the run says ``failed``: **failed** (the next attempt retries it).
* ``status.json`` says ``running`` but nobody holds the run's lock: **interrupted** (the sweep
  was killed); held lock: **running** (another sweep process or array task has it).
* otherwise **pending**.

Files written here: ``<run>/status.json`` (per run), ``<output>/runs.jsonl`` (one line per
attempt start and end, append-only) and ``<output>/status.json`` (summary of all runs).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

METRICS, RUN_STATUS, RUN_RECORD = "metrics.json", "status.json", "run.json"
COMMAND, ERROR, LOG = "command.txt", "error.txt", "log.txt"
STATES = ("done", "running", "resumable", "interrupted", "failed", "pending")


def code_version(root: Path) -> str | None:
    """The commit of the checkout a run's code comes from (``git rev-parse``, 12 hex digits),
    with ``+dirty`` when a tracked file differs from it; None outside a git checkout. Kept in
    ``run.json`` (``code``) and each attempt's line of ``log.txt``, so a study can say which
    runs a change of the training code reached."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename): readers never see half a file, and a
    summary rewritten by several SLURM array tasks at once stays valid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def append_event(output: Path, event: dict[str, Any]) -> None:
    """One line in ``runs.jsonl`` (a single small ``O_APPEND`` write: safe across processes)."""
    output.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **event}, default=str)
    with (output / "runs.jsonl").open("a") as f:
        f.write(line + "\n")


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest full checkpoint to resume from, or None.

    ``last.ckpt`` is written at every validation (``save_last: true``); Lightning's SLURM
    auto-requeue writes ``hpc_ckpt_<n>.ckpt`` into the root dir on SIGUSR1, which can be newer.
    """
    found = [p for p in [run_dir / "checkpoints" / "last.ckpt",
                         *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<run>/.lock``.

    The OS drops it when its holder dies, so a killed sweep never leaves a stale lock; it is
    handed to the training process too (``pass_fds``), so an orphaned training keeps the run
    marked as running.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.file: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self.file = handle
        return True

    def fileno(self) -> int:
        assert self.file is not None
        return self.file.fileno()

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    def held_elsewhere(self) -> bool:
        """True when another process holds the lock (probes without keeping it)."""
        if not self.path.exists():
            return False
        if self.acquire():
            self.release()
            return False
        return True


def run_state(run_dir: Path) -> str:
    """One of :data:`STATES` for a run directory."""
    if (run_dir / METRICS).is_file():
        return "done"
    status = (read_json(run_dir / RUN_STATUS) or {}).get("status")
    if status == "running" and RunLock(run_dir).held_elsewhere():
        return "running"
    if resume_checkpoint(run_dir) is not None:
        return "resumable"
    if status == "failed":
        return "failed"
    if status in ("running", "interrupted"):
        return "interrupted"
    return "pending"


def set_run_status(run_dir: Path, status: str, **fields: Any) -> dict[str, Any]:
    """Update ``<run>/status.json`` (keeps earlier fields such as the attempt count)."""
    data = read_json(run_dir / RUN_STATUS) or {}
    data.update(status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                host=socket.gethostname(), **fields)
    write_json(run_dir / RUN_STATUS, data)
    return data


def summarise(sweep_name: str, output: Path, runs: list) -> dict[str, Any]:
    """Rewrite ``<output>/status.json`` from the run directories and return it."""
    rows, counts = [], dict.fromkeys(STATES, 0)
    for run in runs:
        state = run_state(run.run_dir)
        counts[state] += 1
        status = read_json(run.run_dir / RUN_STATUS) or {}
        metrics = read_json(run.run_dir / METRICS) if state == "done" else None
        rows.append({
            "index": run.index, "run_id": run.run_id, "state": state,
            "attempts": status.get("attempts", 0), "elapsed_s": status.get("elapsed_s"),
            "returncode": status.get("returncode"),
            "value": metrics.get("value") if metrics else None,
        })
    summary = {"sweep": sweep_name, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "total": len(runs), "counts": counts, "runs": rows}
    write_json(output / "status.json", summary)
    return summary
