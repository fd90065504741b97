"""Shared helpers of the datamodule tests: tiny jsonl fixtures and an offline setup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from datamodules.templates import LLAMA2_PREFIX

BOS, EOS = "<s>", "</s>"


def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub access, no PARADE_DATA_DIR from the caller, a private cache folder."""
    import datasets
    import huggingface_hub.constants

    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.delenv("PARADE_DATA_DIR", raising=False)
    monkeypatch.setenv("PARADE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def offline_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fixture form of :func:`offline` (modules use it with ``pytestmark``)."""
    offline(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def tok():
    """The tiny offline byte-level tokenizer of ``tiny-llama``."""
    from methods.backbones import load_tokenizer

    return load_tokenizer("tiny-llama")


def write_jsonl(root: Path, task: str, split: str, rows: list[dict[str, Any]]) -> Path:
    """Write ``<root>/<task>/<split>.jsonl`` and return its path."""
    path = root / task / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def make_dm(cls: type, data_dir: Path, tokenizer, **kwargs: Any):
    """A datamodule on ``data_dir`` with the given tokenizer (cache in ``data_dir/.cache``)."""
    kwargs.setdefault("cache_dir", str(data_dir / ".cache"))
    dm = cls(data_dir=str(data_dir), **kwargs)
    dm.tokenizer = tokenizer
    return dm


def llama2(query: str, bos: str = BOS) -> str:
    """The paper's system template around a query (prompt part)."""
    return f"{bos}{LLAMA2_PREFIX}{query}[/INST]"


def decode(tokenizer, ids: list[int]) -> str:
    """Decode without dropping special tokens."""
    return tokenizer.decode(ids, skip_special_tokens=False)


def rte_rows(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    """``n`` RTE-style rows with distinct texts and alternating labels."""
    return [
        {"sentence1": f"{prefix} premise {i}.", "sentence2": f"hyp {i}.", "label": i % 2, "idx": i}
        for i in range(n)
    ]


def sst2_rows(n: int) -> list[dict[str, Any]]:
    """``n`` SST-2-style rows."""
    return [{"sentence": f"movie {i} ", "label": i % 2, "idx": i} for i in range(n)]
