"""Integration: every task available under the real data folder, with the real SmolLM2 tokenizer.

Data folder: ``$PARADE_DATA_DIR``, else ``<repo>/../shared/data``; skipped when neither exists.
Split sizes are checked against appendix B's rules on the full splits; only small subsets
(``max_*_examples``) are tokenised, so the test stays fast.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
from datamodule_fixtures import offline

import datamodules as D
from datamodules.templates import LLAMA2_PREFIX

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PARADE_DATA_DIR") or REPO.parent / "shared" / "data")
LIMITS = {"max_train_examples": 3, "max_dev_examples": 3, "max_test_examples": 3}
PAPER_SIZES = {  # appendix B on the full published data (local bundle permitting)
    "rte": {"train": 2490, "dev": 138, "test": 139},
    "sst2": {"train": 66349, "dev": 1000, "test": 872},
    "gsm8k": {"train": 6973, "dev": 500, "test": 1319},
    "copa": {"train": 400, "dev": 50, "test": 50},
    "qnli": {"test": 5463},
    "boolq": {"dev": 1635, "test": 1635},
    "squad": {"dev": 1000, "test": 10570},
    "e2e": {"train": 42061},
    "mt_bench": {"test": 80},
}


def _rows(task: str, source: str) -> list[dict] | None:
    path = DATA / task / f"{source}.jsonl"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        if task != "e2e":
            return [{} for line in f if line.strip()]  # only the count is needed
        return [json.loads(line) for line in f if line.strip()]


@functools.cache
def _expected(cls: type[D.TaskDataModule]) -> dict[str, int]:
    """Split sizes from the raw files and the task's split rule (None entries: missing)."""
    sizes: dict[str, int] = {}
    for split in cls.available_splits():
        rows = _rows(cls.folder or cls.task, cls.source_of(split))
        if rows is None:
            continue
        n = len(rows)
        if cls.split_rule == "halve_validation" and split != "train":
            n = n // 2 if split == "dev" else n - n // 2
        elif cls.split_rule == "train_holdout" and split != "test":
            held = cls.holdout_size(n)
            n = held if split == "dev" else n - held
        elif cls is D.E2E and split != "train":
            n = len({r["meaning_representation"] for r in rows})
        sizes[split] = n
    return sizes


@pytest.fixture(scope="module")
def smollm2():
    from methods.backbones import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def modules(smollm2, tmp_path_factory):
    """One datamodule per task, shared by the split tests (raw data is read once)."""
    cache = tmp_path_factory.mktemp("dm_cache")
    built: dict[str, D.TaskDataModule] = {}

    def get(task: str) -> D.TaskDataModule:
        if task not in built:
            built[task] = D.TASKS[task](data_dir=str(DATA), cache_dir=str(cache), **LIMITS)
            built[task].tokenizer = smollm2
        return built[task]

    return get


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"no data folder: set PARADE_DATA_DIR (looked at {DATA})")
    offline(monkeypatch, tmp_path)


CASES = [(t, s) for t in sorted(D.TASKS) for s in D.TASKS[t].available_splits()]


@pytest.mark.parametrize(("task", "split"), CASES, ids=[f"{t}-{s}" for t, s in CASES])
def test_real_split(task, split, modules, smollm2):
    cls = D.TASKS[task]
    expected = _expected(cls)
    assert PAPER_SIZES.get(task, {}).items() <= expected.items()
    dm = modules(task)
    if split not in expected:
        with pytest.raises(D.MissingSplitError, match=f"{task}.*{split}"):
            dm.split_examples(split)
        source = cls.source_of(split)
        pytest.skip(f"{task}/{source}.jsonl not in {DATA} (MissingSplitError raised as expected)")
    examples = dm.split_examples(split)
    assert dm.stats[split]["split_rows"] == expected[split]
    assert len(examples) == min(3, expected[split]) and dm.stats[split]["dropped"] == 0
    for ex in examples:
        prompt = smollm2.decode(ex["prompt_ids"])
        assert prompt.startswith("<|im_start|>" + LLAMA2_PREFIX) and prompt.endswith("[/INST]")
        assert len(ex["prompt_ids"]) + len(ex["response_ids"]) <= 2048
        assert "text" in ex["targets"]
        if cls.has_response:
            assert ex["response_ids"][-1] == smollm2.eos_token_id
            assert smollm2.decode(ex["response_ids"][:-1]) == ex["targets"]["text"]
    loader = {"train": dm.train_dataloader, "dev": dm.val_dataloader}.get(
        split, dm.predict_dataloader
    )()
    batch = next(iter(loader))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["prompt_mask"].shape


def test_tokenizer_chat_style_real(smollm2, tmp_path):
    if _rows("rte", "validation") is None:
        pytest.skip("rte/validation.jsonl missing")
    dm = D.RTE(data_dir=str(DATA), chat_style="tokenizer", cache_dir=str(tmp_path), **LIMITS)
    dm.tokenizer = smollm2
    ex = dm.split_examples("test")[0]
    prompt = smollm2.decode(ex["prompt_ids"])
    assert prompt.startswith("<|im_start|>system\n") and "<|im_start|>user\nsentence 1: " in prompt
    assert prompt.endswith("relation or not?<|im_end|>\n<|im_start|>assistant\n")
    response = smollm2.decode(ex["response_ids"])
    assert response in ("entailment<|im_end|>", "not entailment<|im_end|>")


@pytest.mark.parametrize(("protocol", "rows"), [("per_row", 4693), ("per_mr", None)])
def test_e2e_protocols_on_the_real_test_split(protocol, rows, smollm2, tmp_path):
    """Appendix B.3's 4,693 test rows per row; one example per MR when grouped."""
    raw = _rows("e2e", "test")
    if raw is None:
        pytest.skip("e2e/test.jsonl missing")
    dm = D.E2E(data_dir=str(DATA), cache_dir=str(tmp_path), e2e_protocol=protocol, **LIMITS)
    dm.tokenizer = smollm2
    examples = dm.split_examples("test")
    expected = rows or len({r["meaning_representation"] for r in raw})
    assert len(raw) == 4693 and dm.stats["test"]["split_rows"] == expected
    assert all(len(ex["targets"]["references"]) == 1 for ex in examples) == (rows is not None)
