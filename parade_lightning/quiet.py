"""Less noise on every run: third-party tips and warnings that say nothing about the user's run.

Applied by the ``parade`` command (not on import), so library users keep their own settings.
Real progress bars (training, generation, loading the GGUF) stay; what goes:

* Lightning's "💡 Tip: … litlogger" advertisement, logged on every Trainer start;
* Lightning's own deprecation warning from ``lightning/pytorch/utilities/_pytree.py`` (its
  code, not ours, calling ``isinstance(treespec, LeafSpec)``);
* the per-split "Generating rows split" bars of ``datasets`` when a local jsonl is read (see
  :func:`datamodules.sources.load_local`, which silences them itself).
"""

from __future__ import annotations

import logging
import warnings

_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero",
                      "lightning_fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in str(record.getMessage())


def quiet_third_party() -> None:
    """Install the filters (idempotent)."""
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
