"""parade-lightning: PEFT of causal LMs with PyTorch Lightning, built around PARADE.

Public API (see ``docs/design.md``)::

    from parade_lightning import load_backbone, PeftLitModule, generate
    from parade_lightning import load_adapter_model, predict   # a trained adapter, new rows

This package is the top of the library's layers (``methods`` <- ``datamodules`` <-
``parade_lightning``; ``callbacks`` sit above it): the backbone loaders and the parameter
count live with the methods and are re-exported here under their public names.
"""

from methods.backbones import load_backbone, load_tokenizer, meta_model
from methods.counting import Budget, parameter_budget
from parade_lightning.generation import generate
from parade_lightning.inference import load_adapter_model, predict
from parade_lightning.lit_module import PeftLitModule

__all__ = [
    "load_backbone", "load_tokenizer", "meta_model", "generate", "PeftLitModule",
    "parameter_budget", "Budget", "load_adapter_model", "predict",
]
