"""End-to-end fault injection (``make faults``): real ``kill -9`` during training and during a
checkpoint save, then ``parade fit --ckpt_path last``.

Each case runs ``python -m faults <kind> fit …`` (tests/faults.py) in a subprocess on the tiny
RTE fixture of tests/test_cli.py, resumes it, and checks that

* the killed run left a loadable ``last.ckpt`` (for ``kill_save``: the previous one, intact,
  while the cut temporary file is the only trace of the killed save);
* the resumed run ends with adapter weights ``torch.equal`` to an uninterrupted run's;
* no temporary checkpoint file is left behind, and nothing was written to ``$TMPDIR``.

Usage: ``python tests/fault_suite.py [work folder]``; exit status 0 when every case holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path[:0] = [str(ROOT), str(TESTS)]

from test_cli import cli_args  # noqa: E402  (the CLI tests' fixture and arguments)

from methods.adapter_files import load_checkpoint_file  # noqa: E402
from parade_lightning.checkpoint_io import partial_files  # noqa: E402

STEPS = "10"  # 6 batches an epoch: the kills land mid-epoch 0 and the resume crosses epochs


def parade(work: Path, *args: str, kind: str | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
           "TMPDIR": str(work / "tmp"), "HF_HUB_OFFLINE": "1"}
    module = ["-m", "faults", kind] if kind else ["-m", "parade_lightning.cli"]
    return subprocess.run([sys.executable, *module, "fit", *args], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900,
                          ).returncode


def last(work: Path) -> Path:
    return work / "runs" / "parade" / "rte" / "version_0" / "checkpoints" / "last.ckpt"


def case(name: str, kind: str, reference: dict, base: Path) -> list[str]:
    work = base / name
    (work / "tmp").mkdir(parents=True)
    args = cli_args(work, "--test_after_fit", "false", "--trainer.max_steps", STEPS)
    problems = []
    code = parade(work, *args, kind=kind)
    if code != -9:
        return [f"{name}: the injected kill did not happen (exit status {code})"]
    killed_at = load_checkpoint_file(last(work))["global_step"]
    orphans = partial_files(last(work))
    if kind == "kill_save" and len(orphans) != 1:
        problems.append(f"{name}: expected the killed save's temporary file, found {orphans}")
    code = parade(work, *args, "--ckpt_path", "last")
    if code != 0:
        return problems + [f"{name}: resume failed (exit status {code})"]
    resumed = load_checkpoint_file(last(work))
    if resumed["global_step"] != reference["global_step"] or killed_at >= int(STEPS):
        problems.append(f"{name}: resumed run's last.ckpt is at step {resumed['global_step']}, "
                        f"the uninterrupted run's at {reference['global_step']}")
    for key, value in reference["state_dict"].items():
        if not torch.equal(resumed["state_dict"][key], value):
            problems.append(f"{name}: {key} differs from the uninterrupted run")
            break
    if partial_files(last(work)):
        problems.append(f"{name}: temporary checkpoint files left: {partial_files(last(work))}")
    if any((work / "tmp").iterdir()):
        problems.append(f"{name}: files written to TMPDIR: {list((work / 'tmp').iterdir())}")
    print(f"{name}: killed with last.ckpt at step {killed_at}, resumed to step "
          f"{resumed['global_step']}: {'ok' if not problems else 'FAILED'}", flush=True)
    return problems


def main(argv: list[str]) -> int:
    base = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="parade-faults-"))
    straight = base / "uninterrupted"
    (straight / "tmp").mkdir(parents=True)
    code = parade(straight, *cli_args(straight, "--test_after_fit", "false",
                                      "--trainer.max_steps", STEPS))
    if code != 0:
        print(f"the uninterrupted reference run failed (exit status {code})")
        return 1
    reference = load_checkpoint_file(last(straight))
    problems = []
    for name, kind in (("kill_during_training", "kill_train"),
                       ("kill_during_checkpoint_save", "kill_save")):
        problems += case(name, kind, reference, base)
    for problem in problems:
        print(problem)
    print(f"fault suite: {'all cases hold' if not problems else 'FAILED'} (work folder {base})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
