"""A torchmetrics wrapper so evaluation can accumulate over batches and sync across ranks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric

from parade_lightning.metrics.registry import get_metric


class GenerationMetric(Metric):
    """Accumulate a registered generation metric over batches (and DDP ranks).

    Only sums and a count are kept, so ``compute`` equals :func:`score` on all the
    examples at once, and the states reduce with a plain ``sum`` across processes.

    Args:
        metric: a key of ``METRICS``.
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Example:
        >>> m = GenerationMetric("gsm8k_accuracy")
        >>> m.update(["... #### 72"], [{"text": "#### 72", "answer_number": "72"}])
        >>> float(m.compute()["gsm8k_accuracy"])
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, metric: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = get_metric(metric)
        # float64: sums over tens of thousands of examples stay exact to ~1e-12.
        zero = torch.tensor(0.0, dtype=torch.float64)
        self.add_state("value_sum", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        for key in self.spec.extra_keys:
            self.add_state(f"{key}_sum", default=zero.clone(), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], targets: Sequence[Mapping[str, Any]]) -> None:
        """Score a batch of generations and add them to the running sums."""
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
        for prediction, target in zip(predictions, targets, strict=True):
            example = self.spec.score_example(prediction, target)
            self.value_sum += example.value
            for key in self.spec.extra_keys:
                setattr(self, f"{key}_sum", getattr(self, f"{key}_sum") + example.extras[key])
        self.count += len(predictions)

    def compute(self) -> dict[str, torch.Tensor]:
        """Means so far: ``{metric_name: value, **extras}`` (NaN before any update)."""
        count = self.count.to(torch.float64)
        result = {self.spec.name: self.value_sum / count}
        for key in self.spec.extra_keys:
            result[key] = getattr(self, f"{key}_sum") / count
        return result
