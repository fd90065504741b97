"""``quiet_third_party``: the noise the ``parade`` command drops, and nothing else."""

from __future__ import annotations

import logging

import pytest

from parade_lightning.quiet import quiet_third_party

DROPPED = [
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging, try litlogger"),
    ("transformers.quantizers.quantizer_gguf",
     "Loading a GGUF checkpoint with its weights packed is fastest in float32, and this one was "
     "asked for in torch.bfloat16."),
]


@pytest.mark.parametrize(("name", "message"), DROPPED)
def test_noise_is_dropped_and_the_rest_kept(name, message):
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter per text
    logger = logging.getLogger(name)
    texts = [f.text for f in logger.filters if hasattr(f, "text")]
    assert len(texts) == len(set(texts))
    kept = []
    handler = logging.Handler()
    handler.emit = kept.append
    logger.addHandler(handler)
    try:
        logger.warning(message)
        logger.warning("a real warning about this run")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in kept] == ["a real warning about this run"]
