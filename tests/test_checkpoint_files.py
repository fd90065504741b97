"""Checkpoint files: atomic saves (even with TMPDIR elsewhere), no orphan temporary files,
refused unsafe pickles and clear errors for cut or empty files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from methods.adapter_files import UnsafeCheckpointError, load_adapter, load_checkpoint_file
from parade_lightning.checkpoint_io import AtomicCheckpointIO, atomic_torch_save, partial_files

ROOT = Path(__file__).resolve().parents[1]


class Evil:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_save_writes_beside_the_target_whatever_tmpdir_is(tmp_path, monkeypatch):
    elsewhere = tmp_path / "other_tmp"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    seen = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save",
                        lambda obj, f: seen.append(Path(f.name)) or real_save(obj, f))
    target = tmp_path / "ckpt" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)
    assert seen[0].parent == target.parent and seen[0].name.startswith(".last.ckpt.partial-")
    assert torch.equal(load_checkpoint_file(target)["state_dict"]["w"], torch.ones(2))
    assert not partial_files(target) and not list(elsewhere.iterdir())


def test_a_failing_save_keeps_the_previous_checkpoint_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, target)

    def broken(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="No space left"):
        atomic_torch_save({"step": 2}, target)
    assert load_checkpoint_file(target) == {"step": 1} and not partial_files(target)


def test_kill_during_save_keeps_last_ckpt_and_next_save_removes_the_orphan(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, target)
    child = textwrap.dedent(f"""
        import os, signal, torch
        from parade_lightning.checkpoint_io import atomic_torch_save
        def dying(obj, handle):
            handle.write(b"PK partial bytes")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the write
        torch.save = dying
        atomic_torch_save({{"step": 2}}, {str(target)!r})
    """)
    done = subprocess.run([sys.executable, "-c", child], cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -9
    assert load_checkpoint_file(target) == {"step": 1}  # the previous good checkpoint
    assert len(partial_files(target)) == 1  # the killed save's temporary file ...
    atomic_torch_save({"step": 3}, target)
    assert not partial_files(target) and load_checkpoint_file(target) == {"step": 3}  # ... gone


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut here"], ids=["empty", "truncated"])
def test_empty_or_truncated_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "last.ckpt"
    if content:
        atomic_torch_save({"state_dict": {"w": torch.ones(100)}}, path)
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        path.write_bytes(content)
    for load in (load_checkpoint_file, AtomicCheckpointIO().load_checkpoint, load_adapter):
        with pytest.raises(ValueError, match=rf"not a checkpoint: {path} \(truncated\?\)"):
            load(path)


def test_a_pickle_that_runs_code_is_refused_with_how_to_convert(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "colleague.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"method": Evil(marker)}}, path)
    for load in (load_checkpoint_file, AtomicCheckpointIO().load_checkpoint, load_adapter):
        with pytest.raises(UnsafeCheckpointError, match=r"refused to load .*arbitrary code.*"
                                                       r"trust.*convert"):
            load(path)
    assert not marker.exists()


def test_the_checkpoint_io_never_loads_with_weights_only_false(tmp_path):
    path = tmp_path / "x.ckpt"
    atomic_torch_save({"a": 1}, path)
    with pytest.raises(ValueError, match="refusing weights_only=False"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)


def test_no_product_code_calls_torch_load_without_weights_only():
    """Every ``torch.load`` in the product passes ``weights_only=True``."""
    offenders = []
    for folder in ("methods", "datamodules", "parade_lightning", "callbacks", "benchmarks"):
        for file in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(file.read_text().splitlines(), 1):
                code = line.strip()
                if code.startswith(('"', "f\"")):
                    continue  # an error message telling the user about torch.load
                if "torch.load(" in code and "weights_only=True" not in code:
                    offenders.append(f"{file.relative_to(ROOT)}:{number}")
    assert not offenders, offenders
