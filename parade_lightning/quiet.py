"""Less noise on every run: third-party tips and warnings that say nothing about the user's run.

Applied by the ``parade`` command (not on import), so library users keep their own settings.
Real progress bars (training, generation, loading the GGUF) stay; what goes:

* Lightning's "💡 Tip: … litlogger" advertisement, logged on every Trainer start;
* Lightning's own deprecation warning from ``lightning/pytorch/utilities/_pytree.py`` (its
  code, not ours, calling ``isinstance(treespec, LeafSpec)``);
* transformers' "Loading a GGUF checkpoint with its weights packed is fastest in float32" warning
  when a ``.gguf`` backbone is loaded with ``backbone_dtype: bfloat16``: it says the weights stay
  quantized, but the embedded SmolLM2 (Q4_1) is always dequantized into plain ``nn.Linear``
  weights of the asked dtype, so it describes a run that is not happening;
* the per-split "Generating rows split" bars of ``datasets`` when a local jsonl is read (see
  :func:`datamodules.sources.load_local`, which silences them itself).
"""

from __future__ import annotations

import logging
import warnings

_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero",
                      "lightning_fabric.utilities.rank_zero")


_GGUF_LOGGER = "transformers.quantizers.quantizer_gguf"


class _Drop(logging.Filter):
    """Drop the records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.getMessage())


def _add(logger_name: str, text: str) -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _Drop) and f.text == text for f in logger.filters):
        logger.addFilter(_Drop(text))


def quiet_third_party() -> None:
    """Install the filters (idempotent)."""
    for name in _LIGHTNING_LOGGERS:
        _add(name, "💡 Tip")
    _add(_GGUF_LOGGER, "with its weights packed is fastest in float32")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
