"""TensorBoard diagnostics of PARADE: vector statistics and pooler attention entropy.

For each decoder layer, the mean and standard deviation of the generated ``l_q, l_v, l_u``
(how far PARADE moves away from the identity 1.0) and the entropy of the pooler's attention
over prompt tokens (low: the capsules focus on few tokens). Logged as ``parade/…`` scalars,
averaged over layers, and per layer when ``per_layer`` is set.
"""

from __future__ import annotations

import lightning as L
import torch

from methods.parade import Parade


def parade_statistics(model: torch.nn.Module, per_layer: bool = False) -> dict[str, float]:
    """Statistics of the vectors and pooler attention of the model's last forward."""
    stats: dict[str, list[float]] = {}
    per: dict[str, float] = {}
    for layer in Parade.layers(model):
        values = {f"l_{role}_{kind}": fn(v).item()
                  for role, v in layer.vectors_by_role().items()
                  for kind, fn in (("mean", torch.mean), ("std", torch.std))}
        attention = layer.generator.pooler.last_attention
        if attention is not None:  # (B, T, K), zeros off the prompt
            entropy = -(attention * attention.clamp_min(1e-12).log()).sum(dim=1)
            values["pool_entropy"] = entropy.mean().item()
        for key, value in values.items():
            stats.setdefault(key, []).append(value)
            if per_layer:
                per[f"parade_layers/{key}/layer_{layer.layer:02d}"] = value
    averaged = {f"parade/{k}": sum(v) / len(v) for k, v in stats.items()}
    return {**averaged, **per}


class ParadeDiagnostics(L.Callback):
    """Log :func:`parade_statistics` every ``every_n_steps`` optimisation steps (PARADE only).

    Args:
        every_n_steps: logging period in optimisation steps; ``None`` (default): the
            Trainer's ``log_every_n_steps``, so short runs log them too.
        per_layer: also log every layer's values.
    """

    def __init__(self, every_n_steps: int | None = None, per_layer: bool = False) -> None:
        self.every_n_steps, self.per_layer = every_n_steps, per_layer
        self._logged_step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps
        step = trainer.global_step  # optimisation steps done (constant while accumulating)
        if not isinstance(pl_module.method, Parade) or step % every or step == self._logged_step:
            return
        self._logged_step = step
        stats = parade_statistics(pl_module.model, self.per_layer)
        if stats:
            pl_module.log_dict(stats, on_step=True, on_epoch=False)
