"""Running a sweep's runs, one ``parade fit`` subprocess each, resumably.

A subprocess per run isolates runs from each other (a crash or an out-of-memory kill of one run
cannot take the sweep down, and every run starts with fresh memory) and makes each run
exactly the command in its ``command.txt``. Runs go one after the other on this machine; to use
many machines, hand the same runs to SLURM (:mod:`parade_lightning.sweep.slurm`).
"""

from __future__ import annotations

import ctypes
import fnmatch
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parade_lightning.sweep import state as st
from parade_lightning.sweep.plan import Run, relevant_environment
from parade_lightning.sweep.sweep_file import Sweep

#: Launch hook: JSON ``{"<run id glob>": "<module> [args…]"}`` starts matching runs as
#: ``python -m <module> [args…] fit …`` instead of ``python -m parade_lightning.cli fit …``
#: (same arguments, config and directory). The tests use it to inject faults
#: (``tests/faults.py``); a user can wrap runs with a profiler or a launcher the same way.
LAUNCH_ENV = "PARADE_SWEEP_LAUNCH"
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_TAIL_LINES = 80


def _child_setup(own_group: bool) -> Callable[[], None]:
    """What the child does before ``exec``: maybe its own process group, and SIGTERM when
    the sweep dies (even by SIGKILL), so no orphaned training keeps writing into a run
    directory that a rerun resumes (Linux ``prctl``; elsewhere the run lock still guards)."""

    def setup() -> None:
        if own_group:
            os.setpgid(0, 0)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    return setup


class Supervisor:
    """Starts one run's process and relays signals to it.

    Locally the child gets its own process group, so Ctrl-C reaches it once (forwarded from
    here). Under SLURM the scheduler signals every process of the step itself (time limit,
    ``--signal=SIGUSR1@…`` for Lightning's auto-requeue), so nothing is forwarded.
    """

    def __init__(self) -> None:
        self.stop_requested = False
        self.forward = "SLURM_JOB_ID" not in os.environ
        self.child: subprocess.Popen | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        if signum in _STOPPING:
            self.stop_requested = True
        if self.forward and self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path,
            keep_fds: tuple[int, ...], timeout: float | None) -> tuple[int, bool]:
        """Run ``argv`` with output appended to ``log``; returns ``(returncode, timed_out)``."""
        # handlers can only be installed from the main thread (a sweep run from a thread
        # just does not relay signals)
        main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.getsignal(s) for s in _FORWARDED} if main else {}
        for sig in previous:
            signal.signal(sig, self._handler)
        timed_out = False
        try:
            with log.open("ab") as out:
                self.child = subprocess.Popen(
                    argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, pass_fds=keep_fds,
                    preexec_fn=_child_setup(own_group=self.forward),
                )
                try:
                    returncode = self.child.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    self.child.terminate()
                    try:
                        returncode = self.child.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        self.child.kill()
                        returncode = self.child.wait()
        finally:
            self.child = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return returncode, timed_out


def _launcher_for(run_id: str) -> list[str] | None:
    launchers = json.loads(os.environ.get(LAUNCH_ENV) or "{}")
    return next((shlex.split(command) for pattern, command in launchers.items()
                 if fnmatch.fnmatch(run_id, pattern)), None)


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        text = path.read_bytes()[-64_000:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _set_aside_checkpoints(run_dir: Path, attempt: int) -> None:
    """Move an earlier attempt's checkpoints out of the way of a fresh start (kept, not
    deleted: ``<run>/superseded/attempt<k>/``), so the new run's best/last are its own."""
    old = [p for p in [run_dir / "checkpoints", *run_dir.glob("hpc_ckpt_*.ckpt")] if p.exists()]
    if old:
        target = run_dir / "superseded" / f"attempt{attempt}"
        target.mkdir(parents=True, exist_ok=True)
        for path in old:
            path.rename(target / path.name)


def _reason(returncode: int, timed_out: bool, supervisor: Supervisor, log: Path) -> str:
    """Why an attempt left no ``metrics.json`` (for ``error.txt`` and the progress line)."""
    if timed_out:
        return "timed out"
    if supervisor.stop_requested:
        return f"stopped by a signal to the sweep (exit code {returncode})"
    if returncode < 0:
        return f"killed by signal {-returncode}"
    if returncode:
        return f"exit code {returncode}"
    if "Received SIGTERM" in _tail(log, 20):  # Lightning stops gracefully, with exit code 0
        return "the training process received SIGTERM and stopped early"
    return "finished without metrics.json (is test_after_fit true?)"


def _echo(line: str) -> None:
    print(line, flush=True)


def run_one(sweep: Sweep, run: Run, supervisor: Supervisor | None = None,
            fresh: bool = False) -> dict[str, Any]:
    """Run (or resume) one run unless it is done or busy; returns its outcome.

    The outcome's ``state`` is ``done``, ``failed``, ``interrupted``, ``skipped`` (already done)
    or ``busy`` (another process holds it).
    """
    supervisor = supervisor or Supervisor()
    run_dir = run.run_dir
    lock = st.RunLock(run_dir)
    if (run_dir / st.METRICS).is_file():
        return {"state": "skipped"}
    if not lock.acquire():
        return {"state": "busy"}
    try:
        if (run_dir / st.METRICS).is_file():  # finished by someone else meanwhile
            return {"state": "skipped"}
        return _attempt(sweep, run, supervisor, lock, fresh)
    finally:
        lock.release()


def _attempt(sweep: Sweep, run: Run, supervisor: Supervisor, lock: st.RunLock,
             fresh: bool) -> dict[str, Any]:
    run_dir = run.run_dir
    previous = st.read_json(run_dir / st.RUN_STATUS) or {}
    attempt = int(previous.get("attempts", 0)) + 1
    if fresh:
        _set_aside_checkpoints(run_dir, attempt)
    resume = st.resume_checkpoint(run_dir)
    inherited = relevant_environment(dict(os.environ))
    code = st.code_version(sweep.root)
    st.write_json(run_dir / st.RUN_RECORD, {**run.record(sweep, inherited), "code": code})
    header = f"# run {run.run_id} of sweep {sweep.name} (index {run.index})\n"
    command = header + run.command(sweep.root, inherited=inherited) + "\n"
    if resume is not None:
        command += f"# attempt {attempt} resumed from {resume.name}:\n# "
        command += run.command(sweep.root, resume, inherited) + "\n"
    (run_dir / st.COMMAND).write_text(command)
    (run_dir / st.ERROR).unlink(missing_ok=True)
    argv = run.argv(resume)
    launcher = _launcher_for(run.run_id)
    if launcher:  # same arguments, through another module (LAUNCH_ENV)
        argv = [sys.executable, "-m", *launcher, *argv[3:]]
    log = run_dir / st.LOG
    with log.open("a") as f:
        f.write(f"\n===== attempt {attempt} {time.strftime('%Y-%m-%dT%H:%M:%S')} "
                f"({'resume from ' + str(resume) if resume else 'fresh'}; code {code})\n")
    started = time.monotonic()
    st.set_run_status(run_dir, "running", attempts=attempt, pid=os.getpid(),
                      resumed_from=str(resume) if resume else None)
    st.append_event(sweep.output, {"event": "start", "index": run.index, "run_id": run.run_id,
                                   "attempt": attempt, "resume": str(resume) if resume else None})
    env = {**os.environ, **run.env}
    returncode, timed_out = supervisor.run(argv, sweep.root, env, log, (lock.fileno(),),
                                           sweep.timeout)
    elapsed = round(time.monotonic() - started, 1)
    metrics = st.read_json(run_dir / st.METRICS)
    if returncode == 0 and metrics is not None:
        outcome = {"state": "done", "value": metrics.get("value")}
    else:
        outcome = {"state": "interrupted" if supervisor.stop_requested else "failed"}
        outcome["reason"] = reason = _reason(returncode, timed_out, supervisor, log)
        (run_dir / st.ERROR).write_text(
            f"run {run.run_id} {outcome['state']}: {reason}\ncommand: {run.command(sweep.root)}"
            f"\n--- last {_TAIL_LINES} lines of {log} ---\n{_tail(log)}\n")
    st.set_run_status(run_dir, outcome["state"], returncode=returncode, elapsed_s=elapsed,
                      reason=outcome.get("reason"))
    outcome.update(returncode=returncode, elapsed_s=elapsed, attempt=attempt,
                   resumed=resume is not None)
    st.append_event(sweep.output, {"event": "end", "index": run.index, "run_id": run.run_id,
                                   **outcome})
    return outcome


def run_all(sweep: Sweep, runs: list[Run], indices: list[int] | None = None,
            retry_failed: bool = True, fresh: bool = False,
            echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sweep's runs in index order, skipping what is done; returns the summary.

    Args:
        sweep: the sweep.
        runs: its runs (:func:`parade_lightning.sweep.plan.expand`).
        indices: only these run indices (default: all).
        retry_failed: rerun runs whose last attempt failed (else leave them failed).
        fresh: ignore checkpoints of unfinished runs (start them over).
        echo: where progress lines go (default: stdout, flushed line by line so that a log
            read while the sweep runs, or left by a killed sweep, is complete).
    """
    echo = echo or _echo
    chosen = [r for r in runs if indices is None or r.index in indices]
    supervisor = Supervisor()
    st.summarise(sweep.name, sweep.output, runs)
    began, total = time.monotonic(), len(chosen)
    for position, run in enumerate(chosen, 1):
        prefix = f"[{position}/{total}] #{run.index} {run.run_id}"
        state = st.run_state(run.run_dir)
        last = (st.read_json(run.run_dir / st.RUN_STATUS) or {}).get("status")
        if state == "done" or (last == "failed" and not retry_failed):
            echo(f"{prefix}: {'done' if state == 'done' else 'failed before'}, skipped")
            continue
        if state == "running":
            echo(f"{prefix}: running in another process, skipped")
            continue
        how = "resuming" if state == "resumable" and not fresh else "starting"
        echo(f"{prefix}: {how} ({state})")
        outcome = run_one(sweep, run, supervisor, fresh=fresh)
        value = f" value={outcome['value']:.4f}" if outcome.get("value") is not None else ""
        reason = f" ({outcome['reason']}; see {run.run_dir / st.ERROR})" \
            if outcome.get("reason") else ""
        echo(f"{prefix}: {outcome['state']}{value}{reason} in "
             f"{outcome.get('elapsed_s', 0):.0f} s (sweep {time.monotonic() - began:.0f} s)")
        st.summarise(sweep.name, sweep.output, runs)
        if supervisor.stop_requested:
            echo("stopping: signal received (rerun the same command to continue)")
            break
    summary = st.summarise(sweep.name, sweep.output, runs)
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items() if v)
    echo(f"sweep {sweep.name}: {counts} -> {sweep.output / 'status.json'}")
    return summary
