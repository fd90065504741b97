"""On-disk cache of tokenised splits, so a restart skips templating and tokenising.

One file per split: ``<cache_dir>/<task>/<split>-<key>.npz`` where ``key`` is a SHA-256 (first 20
hex digits) of everything that changes the result: the source code that builds examples (the
shared modules, the task's modules and the project modules they use), the task's resolved
declarations (template, label words, truncation field, split rule, holdout...), the source
data identity (local file path and content hash, or the hub dataset's fingerprint), the
tokenizer (name, vocabulary size, special tokens, chat template and, for fast tokenizers, a
hash of the full tokenizer JSON), chat style, max_length, seed, on_bad_row, the
max_*_examples limit of that split and ``CACHE_VERSION``.

``cache_dir`` defaults to ``$PARADE_CACHE_DIR``, else ``~/.cache/parade_lightning/datamodules``.
Token ids are stored as flat int32 arrays with offsets; targets and stats as embedded JSON.
Writes go to a temporary file that is renamed into place (safe with several processes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1
CACHE_DIR_ENV = "PARADE_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$PARADE_CACHE_DIR`` or ``~/.cache/parade_lightning/datamodules``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "parade_lightning" / "datamodules"


def tokenizer_identity(tokenizer) -> dict[str, Any]:
    """What identifies a tokenizer for caching purposes."""
    ident: dict[str, Any] = {
        "class": type(tokenizer).__name__,
        "name": getattr(tokenizer, "name_or_path", ""),
        "len": len(tokenizer),
        "special": [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token],
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        ident["json"] = hashlib.sha256(backend.to_str().encode()).hexdigest()
    return ident


def cache_key(material: dict[str, Any]) -> str:
    """Hash of the key material (JSON with sorted keys)."""
    blob = json.dumps({"version": CACHE_VERSION, **material}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _flat(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def save_split(path: Path, examples: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    """Write one tokenised split atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prompt, prompt_off = _flat([e["prompt_ids"] for e in examples])
    response, response_off = _flat([e["response_ids"] for e in examples])
    meta = {
        "stats": stats,
        "rows": [
            [e["source"], e["row"], e["targets"], e["truncated"]] for e in examples
        ],
    }
    meta_bytes = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(
            tmp, prompt=prompt, prompt_off=prompt_off, response=response,
            response_off=response_off, meta=meta_bytes,
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_split(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """Read a cached split; None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            prompt, poff = data["prompt"].tolist(), data["prompt_off"].tolist()
            response, roff = data["response"].tolist(), data["response_off"].tolist()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: rebuild
        return None
    examples = [
        {
            "index": i,
            "source": source,
            "row": row,
            "prompt_ids": prompt[poff[i] : poff[i + 1]],
            "response_ids": response[roff[i] : roff[i + 1]],
            "targets": targets,
            "truncated": truncated,
        }
        for i, (source, row, targets, truncated) in enumerate(meta["rows"])
    ]
    return examples, meta["stats"]
