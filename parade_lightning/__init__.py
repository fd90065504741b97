"""parade-lightning: PEFT of causal LMs with PyTorch Lightning, built around PARADE.

Public API (see DESIGN.md)::

    from parade_lightning import load_backbone, PeftLitModule, generate

``PeftLitModule`` (and the other names that depend on ``methods``) load lazily, so that
``methods`` can import the architecture table from here without an import cycle.
"""

from parade_lightning.backbones import load_backbone, load_tokenizer, meta_model
from parade_lightning.budget import Budget, parameter_budget
from parade_lightning.generation import generate

_LAZY = {"PeftLitModule": "parade_lightning.lit_module"}

__all__ = [
    "load_backbone", "load_tokenizer", "meta_model", "generate", "PeftLitModule",
    "parameter_budget", "Budget",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'parade_lightning' has no attribute {name!r}")
