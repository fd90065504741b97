"""Result types shared by every generation metric.

Kept apart from the registry so the per-task modules can return :class:`ExampleScore`
without importing the registry that imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExampleScore:
    """One example's score.

    Attributes:
        value: the metric's value for this example, a fraction in ``[0, 1]``.
        extras: secondary values for this example (e.g. ``{"f1": .., "em": ..}``), also
            fractions in ``[0, 1]``; their keys are the metric's ``extra_keys``.
    """

    value: float
    extras: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreResult:
    """A metric computed over a list of generations.

    All values are fractions in ``[0, 1]``, not percentages: the paper's tables (appendix
    B.7) report them x100, which is a presentation choice left to the caller.

    Attributes:
        metric: the registry name of the metric (a key of ``METRICS``).
        value: the task's headline number: the mean of ``per_example``.
        per_example: each example's score, in input order (1.0/0.0 for accuracy-like
            metrics, the example's F1-EM or ROUGE-L otherwise).
        extras: means of the secondary values, e.g. ``{"f1": .., "em": ..}`` for ``f1_em``.
    """

    metric: str
    value: float
    per_example: list[float]
    extras: dict[str, float]

    @property
    def num_examples(self) -> int:
        """Number of scored examples."""
        return len(self.per_example)


ExampleFn = Callable[[str, Mapping[str, Any]], ExampleScore]


@dataclass(frozen=True)
class MetricSpec:
    """A registry entry: how to score one example and how to read the result.

    Attributes:
        name: registry key, e.g. ``"f1_em"``.
        score_example: ``(prediction, target) -> ExampleScore``; must never raise on any
            prediction string (a bad generation scores 0).
        extra_keys: keys of :attr:`ExampleScore.extras`.
        description: one line for ``--help`` and logs.
    """

    name: str
    score_example: ExampleFn
    extra_keys: tuple[str, ...] = ()
    description: str = ""


def target_field(target: Mapping[str, Any], key: str) -> Any:
    """Return ``target[key]``, falling back to the gold response ``target["text"]``.

    Args:
        target: one target dict; every target carries ``"text"``, the gold response.
        key: the metric-specific key.

    Raises:
        KeyError: when neither ``key`` nor ``"text"`` is present (a data bug, not a bad
            generation, so it is loud).
    """
    if key in target:
        return target[key]
    if "text" in target:
        return target["text"]
    raise KeyError(f"target has neither {key!r} nor 'text': keys are {sorted(target)}")
