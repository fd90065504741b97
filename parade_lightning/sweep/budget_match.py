"""Budget matching: the size of a method that comes closest to a target parameter count.

Counts are exact: each candidate is attached to the backbone built on the ``meta`` device
(:func:`methods.backbones.meta_model`) and counted with :func:`methods.counting.parameter_budget`
(all trainable parameters, so PARADE's ``b_up`` and pooler count too; the paper's 8.9M for
PARADE counts W_down + W_up only). One integer argument, the *knob*, is solved per method: the
method class says which (:attr:`methods.PeftMethod.size_knob`) and how the other arguments
follow it (:meth:`methods.PeftMethod.sized`): PARADE's ``rank`` (K kept a divisor), LoRA's
``r`` (``alpha / r`` kept), budgeted (IA)³'s ``dim``. A sweep entry's ``knob:`` overrides the
class's choice (set as is). A user's method is matched with no edit here.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from transformers import AutoConfig

from methods.backbones import backbone_config, meta_model
from methods.counting import parameter_budget
from methods.registry import effective_args, method_class, method_from_config

#: Configs for counting only (no weights needed), by name.
PRESETS: dict[str, dict[str, Any]] = {
    "llama2-7b": dict(model_type="llama", hidden_size=4096, intermediate_size=11008,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                      vocab_size=32000),
    "llama2-13b": dict(model_type="llama", hidden_size=5120, intermediate_size=13824,
                       num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40,
                       vocab_size=32000),
    "gpt2-large": dict(model_type="gpt2", n_embd=1280, n_layer=36, n_head=20, vocab_size=50257),
    "pythia-1.4b": dict(model_type="gpt_neox", hidden_size=2048, intermediate_size=8192,
                        num_hidden_layers=24, num_attention_heads=16, vocab_size=50304,
                        rotary_pct=0.25),
}
#: Hub ids whose architecture is a preset's: counted from the preset, offline (a sweep whose
#: runs load these backbones plans without a download; sweeps/table7.yaml).
PRESET_IDS: dict[str, str] = {
    "meta-llama/Llama-2-7b-hf": "llama2-7b", "meta-llama/Llama-2-13b-hf": "llama2-13b",
    "openai-community/gpt2-large": "gpt2-large", "EleutherAI/pythia-1.4b": "pythia-1.4b",
}
_MAX_KNOB = 1 << 16


@dataclass
class Match:
    """The solution of one budget match (goes into ``run.json`` and the reports)."""

    class_path: str
    knob: str
    value: int
    init_args: dict[str, Any]
    count: int
    target: int
    target_spec: Any = None

    @property
    def relative_error(self) -> float:
        return (self.count - self.target) / max(self.target, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relative_error": self.relative_error}


def _key(backbone: str | dict[str, Any]) -> str:
    return backbone if isinstance(backbone, str) else json.dumps(backbone, sort_keys=True)


@functools.lru_cache(maxsize=16)
def _config(key: str):
    key = PRESET_IDS.get(key, key)
    if key in PRESETS or key.startswith("{"):
        kwargs = dict(PRESETS[key] if key in PRESETS else json.loads(key))
        return AutoConfig.for_model(kwargs.pop("model_type", "llama"), **kwargs)
    return backbone_config(key)


@functools.lru_cache(maxsize=4096)
def _count(backbone_key: str, class_path: str, init_args_json: str) -> int:
    method = method_from_config({"class_path": class_path,
                                 "init_args": json.loads(init_args_json)})
    model = meta_model(_config(backbone_key))
    method.attach(model)
    return parameter_budget(model).trainable


def count_parameters(backbone: str | dict[str, Any], class_path: str,
                     init_args: dict[str, Any] | None = None) -> int:
    """Trainable parameters of a method on a backbone (memoised)."""
    args = json.dumps(init_args or {}, sort_keys=True, default=list)
    return _count(_key(backbone), class_path, args)


# ---------------------------------------------------------------- knobs


def knob_setter(class_path: str, init_args: dict[str, Any], knob: str | None = None
                ) -> tuple[str, Callable[[int], dict[str, Any]]]:
    """``(knob name, k -> full init_args with the knob set to k)`` for a method: the class's
    :attr:`~methods.PeftMethod.size_knob` and :meth:`~methods.PeftMethod.sized`, or ``knob``
    (from the sweep file) set as is."""
    cls = method_class(class_path)
    base = effective_args(cls, init_args)
    if knob is not None:
        return knob, lambda k: {**base, knob: k}
    name = cls.knob(base)
    if name is None:
        raise ValueError(f"{class_path} declares no size_knob; set `knob:` in the sweep file to "
                         "the integer init arg that sizes the method")
    cls.sized(base, 1)  # a fixed-size configuration says so now
    return name, lambda k: cls.sized(base, k)


def target_count(backbone: str | dict[str, Any], target: float | dict[str, Any]) -> int:
    """A count as is, or the count of a method spec ``{class_path, init_args}``.

    A spec that sets its knob (``{class_path: methods.Parade, init_args: {rank: 3}}``) goes
    through the same knob rule as the solver, so ``rank: 3`` also gets K = 3.
    """
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        return int(round(target))
    class_path = str(target["class_path"])
    args = dict(target.get("init_args") or {})
    try:
        knob, setter = knob_setter(class_path, args)
    except ValueError:
        return count_parameters(backbone, class_path, args)
    if knob in args:
        args = setter(int(args[knob]))
    return count_parameters(backbone, class_path, args)


def solve(backbone: str | dict[str, Any], class_path: str, init_args: dict[str, Any],
          target: float | dict[str, Any], knob: str | None = None) -> Match:
    """Solve the knob of ``class_path`` whose count is closest to ``target`` (ties: smaller).

    The count grows monotonically with the knob for every built-in method, so an exponential
    bracket plus interpolation/bisection finds the crossing in a handful of exact counts.
    """
    wanted = target_count(backbone, target)
    name, setter = knob_setter(class_path, init_args, knob)

    @functools.cache
    def count(k: int) -> int:
        return count_parameters(backbone, class_path, setter(k))

    lo, hi = 1, 0
    if count(1) < wanted:
        slope = max(count(2) - count(1), 1)
        guess = max(2, int(1 + (wanted - count(1)) / slope))
        while hi == 0:
            if count(guess) >= wanted:
                hi = guess
            elif guess >= _MAX_KNOB:
                hi = lo = guess
            else:
                lo, guess = guess, min(2 * guess, _MAX_KNOB)
        step = 0
        while hi - lo > 1:
            step += 1
            if step % 2:  # interpolate (exact for linear counts) ...
                frac = (wanted - count(lo)) / max(count(hi) - count(lo), 1)
                mid = min(max(lo + math.ceil(frac * (hi - lo)), lo + 1), hi - 1)
            else:  # ... and bisect, so convex counts cannot stall the search
                mid = (lo + hi) // 2
            if count(mid) >= wanted:
                hi = mid
            else:
                lo = mid
    candidates = {max(k, 1) for k in (lo - 1, lo, hi, hi + 1) if k >= 1}
    best = min(sorted(candidates), key=lambda k: abs(count(k) - wanted))
    return Match(class_path=class_path, knob=name, value=best, init_args=setter(best),
                 count=count(best), target=wanted, target_spec=target)
