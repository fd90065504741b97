"""Pooler attention maps (eqs. 9-10): the weights per layer, `parade explain` (PNG,
TensorBoard image, JSON), from a checkpoint or a bare backbone, and the errors."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from methods import LoRA, Parade
from methods.adapter_files import save_adapter
from methods.backbones import load_backbone
from parade_lightning.attention_plot import draw_pooler_map
from parade_lightning.cli import main as cli_main
from parade_lightning.pooler_maps import default_layers, pooler_attention_maps

PNG = b"\x89PNG\r\n\x1a\n"


def _sharpen(model: torch.nn.Module) -> None:
    """Large random capsule queries v_k, so the weights are far from uniform."""
    torch.manual_seed(3)
    with torch.no_grad():
        for layer in Parade.layers(model):
            layer.generator.pooler.query.normal_(0.0, 30.0)
            layer.generator.down.weight.normal_(0.0, 1.0)


def _parade(backbone: str = "tiny-llama", **kwargs):
    model, tok = load_backbone(backbone)
    Parade(rank=8, num_capsules=4, **kwargs).attach(model)
    return model, tok


def test_weights_sum_to_one_over_prompt_tokens_and_are_zero_on_padding():
    model, tok = _parade()
    _sharpen(model)
    model.train()
    prompts = [tok("a longer prompt here", add_special_tokens=False)["input_ids"],
               tok("short", add_special_tokens=False)["input_ids"]]
    maps = pooler_attention_maps(model, tok, prompts, layers=[0, -1])
    count = len(Parade.layers(model))
    assert maps.layers == [0, count - 1] and maps.pooler == "capsule"
    batch, layers, width, capsules = maps.weights.shape
    assert (batch, layers, capsules) == (2, 2, 4) and width == len(prompts[0])
    assert maps.mask.sum(1).tolist() == [len(p) for p in prompts]
    sums = maps.weights.sum(dim=2)  # over tokens: (B, L, K)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert torch.all(maps.weights[1][:, ~maps.mask[1]] == 0)  # left padding of the short row
    assert maps.row(1).shape == (2, len(prompts[1]), 4)
    assert maps.weights.max() > 0.5  # sharpened: some capsule focuses on one token
    assert maps.tokens[1] == tok.convert_ids_to_tokens(prompts[1])
    assert model.training  # the forward ran in eval mode; the former mode is back


def test_routing_pooler_weights_are_uniform_over_capsules():
    """PARADE-2's single routing iteration: coupling 1/K on every prompt token."""
    model, tok = _parade("tiny-gpt-neox", pooler="routing")
    maps = pooler_attention_maps(model, tok, [[5, 6, 7]])
    assert torch.allclose(maps.weights, torch.full_like(maps.weights, 0.25))


def test_default_layers_are_the_papers_on_32_layers():
    assert default_layers(32) == [0, 8, 16, 24]  # appendix I: layers 1, 9, 17, 25 (1-based)
    assert default_layers(2) == [0, 1] and default_layers(1) == [0]


def test_errors_name_what_to_do():
    model, tok = load_backbone("tiny-llama")
    LoRA(r=2).attach(model)
    with pytest.raises(ValueError, match="need a PARADE model.*LoRA"):
        pooler_attention_maps(model, tok, [[5, 6]])
    model, tok = _parade(pooler="last")
    with pytest.raises(ValueError, match="'last'.*no attention weights"):
        pooler_attention_maps(model, tok, [[5, 6]])
    model, tok = _parade()
    with pytest.raises(ValueError, match="--layers: layer 99 does not exist"):
        pooler_attention_maps(model, tok, [[5, 6]], layers=[99])


def test_draw_returns_an_image_and_writes_a_png(tmp_path):
    model, tok = _parade("tiny-gpt2")
    maps = pooler_attention_maps(model, tok, [[5, 6, 7, 8]])
    rgb = draw_pooler_map(maps, 0, tmp_path / "m.png", max_tokens=3)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype.name == "uint8"
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG
    assert draw_pooler_map(maps, 0, max_tokens=2, tail=True).shape[2] == 3  # the last 2 tokens


def test_explain_from_a_checkpoint_writes_png_tensorboard_and_weights(tmp_path):
    model, tok = _parade()
    _sharpen(model)
    adapter = save_adapter(model, tmp_path / "adapter", backbone="tiny-llama")
    out = tmp_path / "explain"
    cli_main(["explain", "--ckpt_path", str(adapter), "--prompt", "Is it blue?",
              "--prompt", "no", "--layers", "0", "--chat_style", "plain", "--out", str(out)])
    for i in (0, 1):
        assert (out / f"pooler_map_{i}.png").read_bytes()[:8] == PNG
    records = json.loads((out / "pooler_maps.json").read_text())["prompts"]
    assert [r["prompt"] for r in records] == ["Is it blue?", "no"]
    ids = tok("Is it blue?\n", add_special_tokens=False)["input_ids"]  # plain: query + "\n"
    expected = pooler_attention_maps(model, tok, [ids], layers=[0]).row(0)
    assert torch.allclose(torch.tensor(records[0]["weights"]), expected, atol=1e-6)
    assert records[0]["tokens"] == tok.convert_ids_to_tokens(ids)
    (events,) = (out / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert set(acc.Tags()["images"]) == {"pooler_maps/prompt_0", "pooler_maps/prompt_1"}


def test_explain_without_a_checkpoint_on_a_backbone(tmp_path):
    out = tmp_path / "explain"
    cli_main(["explain", "--backbone", "tiny-gpt2", "--method", "Parade2", "--prompt", "hello",
              "--out", str(out)])
    (record,) = json.loads((out / "pooler_maps.json").read_text())["prompts"]
    assert record["pooler"] == "routing" and (out / "pooler_map_0.png").is_file()
    with pytest.raises(ValueError, match="give --ckpt_path or --backbone"):
        cli_main(["explain", "--prompt", "x", "--out", str(out)])
