"""Parameter budgets: how many parameters a method trains, by group, role and layer.

Works on a model built on the ``meta`` device from a config alone
(:func:`methods.backbones.meta_model`), so the budget of LLaMA-2-7B is computed in
milliseconds without its weights::

    model = meta_model(LlamaConfig(hidden_size=4096, intermediate_size=11008, ...))
    Parade().attach(model)
    print(parameter_budget(model).table())
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from torch import nn


@dataclass
class Budget:
    """Trainable / total parameter counts and their breakdowns."""

    method: str
    trainable: int
    total: int
    by_group: dict[str, int] = field(default_factory=dict)
    by_role: dict[str, int] = field(default_factory=dict)
    by_layer: dict[int, int] = field(default_factory=dict)

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def to_dict(self) -> dict:
        return {
            "method": self.method, "trainable": self.trainable, "total": self.total,
            "percent": self.percent, "by_group": self.by_group, "by_role": self.by_role,
            "by_layer": {str(k): v for k, v in self.by_layer.items()},
        }

    def table(self, per_layer: bool = False) -> str:
        """A Markdown table: totals, the breakdown per group and per role, then per layer.

        Args:
            per_layer: one row per layer; otherwise one row with the per-layer count (or
                its range when layers differ).
        """
        lines = [
            f"| {self.method} | parameters |", "|---|---:|",
            f"| trainable | {self.trainable:,} |", f"| total | {self.total:,} |",
            f"| trainable % | {self.percent:.4f} |",
        ]
        lines += [f"| group `{k}` | {v:,} |" for k, v in self.by_group.items()]
        lines += [f"| role `{k}` | {v:,} |" for k, v in self.by_role.items()]
        if per_layer:
            lines += [f"| layer {k} | {v:,} |" for k, v in self.by_layer.items()]
        elif self.by_layer:
            counts = sorted(self.by_layer.values())
            each = f"{counts[0]:,}" if counts[0] == counts[-1] else f"{counts[0]:,}–{counts[-1]:,}"
            lines.append(f"| per layer ({len(counts)} layers) | {each} |")
        return "\n".join(lines)


def parameter_budget(model: nn.Module) -> Budget:
    """Count the attached method's parameters; the breakdowns each sum to ``trainable``."""
    method = getattr(model, "peft_method", None)
    if method is None:
        raise ValueError("no PEFT method is attached to this model; call method.attach(model)")
    by_group: dict[str, int] = defaultdict(int)
    by_role: dict[str, int] = defaultdict(int)
    by_layer: dict[int, int] = defaultdict(int)
    for layer, group, role, count in method.parameter_rows(model):
        by_group[group] += count
        by_role[role] += count
        by_layer[layer] += count
    trainable = method.num_trainable_parameters(model)
    total = sum(p.numel() for p in model.parameters())
    return Budget(
        type(method).__name__, trainable, total, dict(by_group), dict(by_role), dict(by_layer)
    )
