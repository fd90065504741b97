"""Parameter budgets on the LLaMA-2-7B config, built on the meta device (no weights)."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig

from methods import IA3, LoRA, PaperIA3, Parade, Parade1, Parade3, Parade4
from parade_lightning import meta_model, parameter_budget

LLAMA2_7B = dict(
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, vocab_size=32000,
)


def budget(method):
    model = meta_model(LlamaConfig(**LLAMA2_7B))
    method.attach(model)
    return parameter_budget(model)


def test_lora_r4_all_roles_matches_paper():
    b = budget(LoRA(r=4))
    assert b.trainable == 9_994_240  # paper: 10.0M
    assert sum(b.by_role.values()) == b.trainable == sum(b.by_layer.values())


def test_budgeted_ia3_is_about_9_8m():
    b = budget(PaperIA3())
    assert b.trainable == 32 * 3 * 16 + 32 * 16 * (4096 + 4096 + 11008)  # 9,831,936
    assert round(b.trainable / 1e6, 1) == 9.8  # paper: 9.8M


def test_standard_ia3_count():
    assert budget(IA3()).trainable == 32 * (4096 + 4096 + 11008)


@pytest.mark.parametrize(
    ("method", "paper_millions", "rank", "width"),
    [
        (Parade(), 8.9, 12, 2 * 4096 + 11008),
        (Parade3(), 9.8, 8, 3 * 4096 + 2 * 11008),
        (Parade4(), 9.4, 24, 2 * 4096),
    ],
)
def test_parade_budget_breakdown(method, paper_millions, rank, width):
    """The paper's counts equal W_down + W_up; b_up and the pooler come on top."""
    b = budget(method)
    assert b.by_group["W_down"] == 32 * 4096 * rank
    assert b.by_group["W_up"] == 32 * rank * width
    assert b.by_group["b_up"] == 32 * width
    k = method.num_capsules
    assert b.by_group["pooler"] == 32 * (rank * rank + k * rank)  # W_k^cap and v_k
    assert sum(b.by_group.values()) == b.trainable == sum(b.by_role.values())
    paper_convention = b.by_group["W_down"] + b.by_group["W_up"]
    assert int(paper_convention / 1e5) / 10 == paper_millions  # 8.94M, 9.83M, 9.43M


def test_parade_default_total():
    assert budget(Parade()).trainable == 9_566_208


def test_parade1_has_no_pooler_parameters():
    assert "pooler" not in budget(Parade1()).by_group


def test_budget_table_mentions_groups():
    text = budget(Parade()).table(per_layer=True)
    assert "W_up" in text and "layer 31" in text and "9,566,208" in text
    short = budget(Parade()).table()
    assert "layer 31" not in short and "| per layer (32 layers) | 298,944 |" in short
