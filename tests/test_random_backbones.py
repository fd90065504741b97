"""``load_backbone("random:<config>")`` and the benchmarks' import path (issue 14)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from methods.backbones import BACKBONE_CONFIGS, backbone_config, load_backbone, meta_model

ROOT = Path(__file__).resolve().parents[1]

# shipped shape -> (class, parameters) of the real model (paper table 7, model cards)
SHIPPED = {
    "llama2-7b": ("LlamaForCausalLM", 6_738_415_616),
    "gpt2-large": ("GPT2LMHeadModel", 774_030_080),
    "pythia-1.4b": ("GPTNeoXForCausalLM", 1_414_647_808),
    "smollm2-135m": ("LlamaForCausalLM", 134_515_008),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_shapes_match_the_real_models(name):
    model = meta_model(backbone_config(f"random:{name}"))  # shapes only, no memory
    cls, count = SHIPPED[name]
    assert type(model).__name__ == cls
    assert sum(p.numel() for p in model.parameters()) == count
    assert {p.stem for p in BACKBONE_CONFIGS.glob("*.json")} >= set(SHIPPED)


def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.json"
    path.write_text(json.dumps({
        "_comment": "keys starting with _ are ignored", "model_type": "gpt_neox",
        "vocab_size": 300, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "rotary_pct": 0.5}))
    return path


def test_random_backbone_from_a_json_file(tmp_path):
    spec = f"random:{small_config(tmp_path)}"
    model, tokenizer = load_backbone(spec)
    again, _ = load_backbone(spec)
    assert type(model).__name__ == "GPTNeoXForCausalLM" and not model.training
    assert model.config.pad_token_id == tokenizer.pad_token_id
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)  # seeded: the same weights on every call
    with pytest.raises(FileNotFoundError, match="llama2-7b"):
        load_backbone("random:no-such-shape")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="model_type"):
        load_backbone(f"random:{bad}")


BLOCKED = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("datasets", "jsonargparse", "gguf"):
            raise ImportError(f"{name} is blocked: the GPU machine lacks it")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
from benchmarks import inference, inference_goals, inference_rows, training  # noqa: F401
from methods.backbones import load_backbone
from parade_lightning import generate
model, tokenizer = load_backbone("random:" + sys.argv[2])
print(generate(model, tokenizer, [[5, 6, 7]], max_new_tokens=2, min_new_tokens=2))
"""


def test_benchmarks_import_without_datasets_jsonargparse_gguf(tmp_path):
    """The GPU machine has torch and transformers but not these: the benchmark modules and a
    random backbone must not need them."""
    done = subprocess.run([sys.executable, "-c", BLOCKED, str(ROOT), str(small_config(tmp_path))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_prefill_ops_counts_parade_overhead(tmp_path):
    if str(ROOT) not in sys.path:  # `benchmarks` is a folder of scripts, not a package install
        sys.path.insert(0, str(ROOT))
    from benchmarks import prefill_ops

    config = tmp_path / "llama.json"
    config.write_text(json.dumps({
        "model_type": "llama", "vocab_size": 300, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4}))
    out = tmp_path / "ops.json"
    payload = prefill_ops.main([str(config), "--batch-sizes", "1", "--tokens", "8",
                                "--rounds", "1", "--out", str(out)])
    row = json.loads(out.read_text())["batches"]["1"]
    assert row == payload["batches"]["1"]
    assert row["ops_parade"] > row["ops_base"] > 0 and row["extra_ops_per_layer"] > 0
