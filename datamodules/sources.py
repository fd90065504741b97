"""Where raw rows come from (a local folder or the hub) and how appendix B's splits are cut.

Local layout: ``<data_dir>/<task>/<source split>.jsonl`` (or ``.jsonl.gz``), field names as on
the Hugging Face hub (the layout of ``/work/shared/data``). ``data_dir`` is the datamodule
argument, else the ``PARADE_DATA_DIR`` environment variable. When neither is set, the task's hub
dataset is loaded with ``datasets.load_dataset`` (cached by ``datasets`` as usual); a hub dataset
that still needs a loading script (unsupported since ``datasets`` 4) is retried from the hub's
``refs/convert/parquet`` export.

Split rules (``TaskDataModule.split_rule``), all deterministic in ``seed``:

* ``halve_validation`` (RTE, COPA, BoolQ): train = original train; the original validation is
  permuted with ``numpy.random.default_rng(seed)``; its first ``n // 2`` permuted rows are dev,
  the rest test (RTE: 138 / 139).
* ``train_holdout`` (SST-2, QNLI, ReCoRD, SQuAD, GSM8K, Alpaca): the original train is permuted
  with ``default_rng(seed)``; the first ``holdout`` permuted rows are dev, the rest train; test is
  the task's ``test_source`` split (validation, or test for GSM8K).
* ``native`` (E2E, WikiSQL): train / validation / test as published.
* ``predict_only`` (MT-Bench): one ``test`` split (also used by ``predict``).

Rows of each derived split keep their original order (selected indices are sorted).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np

from datamodules.errors import DataSourceError, MissingSplitError

SplitRule = Literal["halve_validation", "train_holdout", "native", "predict_only"]
SPLITS: tuple[str, ...] = ("train", "dev", "test")
LOCAL_SUFFIXES: tuple[str, ...] = (".jsonl", ".jsonl.gz")
DATA_DIR_ENV = "PARADE_DATA_DIR"
PARQUET_REVISION = "refs/convert/parquet"  # the hub's automatic parquet export
_SUBSET_SALT = 7411  # separates the subset permutation from the split permutation


def resolve_data_dir(data_dir: str | None) -> tuple[Path | None, str]:
    """Return ``(folder or None, where it came from)`` from the argument or ``PARADE_DATA_DIR``."""
    if data_dir:
        return Path(data_dir).expanduser(), "the data_dir argument"
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser(), f"${DATA_DIR_ENV}"
    return None, ""


def local_file(root: Path, folder: str, source: str) -> Path | None:
    """The first existing ``<root>/<folder>/<source>.jsonl[.gz]``, or None."""
    for suffix in LOCAL_SUFFIXES:
        path = root / folder / f"{source}{suffix}"
        if path.is_file():
            return path
    return None


def missing_local_error(
    task: str, split: str, root: Path, folder: str, source: str, origin: str, hub: str | None
) -> MissingSplitError:
    """Build the error for a source file that a needed split lacks."""
    looked = " and ".join(str(root / folder / f"{source}{s}") for s in LOCAL_SUFFIXES)
    hint = (
        f", or unset data_dir/{DATA_DIR_ENV} to load the hub dataset {hub} instead"
        if hub
        else ""
    )
    return MissingSplitError(
        f"{task}: split {split!r} needs the source split {source!r}, which is missing: looked "
        f"for {looked} (data folder from {origin}). Put the file there{hint}."
    )


class JsonRows(list):
    """Rows read from a local file; has the ``datasets.Dataset`` members the datamodule and
    its set-up checks use (``select``, ``to_list``, ``column_names``, ``unique``)."""

    def select(self, indices) -> JsonRows:
        return JsonRows(self[i] for i in indices)

    def to_list(self) -> list[dict[str, Any]]:
        return list(self)

    @property
    def column_names(self) -> list[str]:
        """Every top-level field of any row, in first-seen order."""
        return list(dict.fromkeys(key for row in self for key in row))

    def unique(self, column: str) -> list[Any]:
        """The distinct values of ``column`` (rows without it are skipped)."""
        return list(dict.fromkeys(row[column] for row in self if column in row
                                  and not isinstance(row[column], (list, dict))))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def load_local(path: Path) -> JsonRows:
    """Read a ``.jsonl[.gz]`` file: one JSON object a line (blank lines are ignored).

    Every problem is a :class:`DataSourceError` naming the file and line: bytes that are not
    UTF-8, invalid JSON, a line that is not an object, a top-level field whose type differs from
    the first line that has it (e.g. one ``label`` written as text among numbers), no rows.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    rows = JsonRows()
    first_type: dict[str, tuple[str, int]] = {}  # field -> (JSON type, line that set it)
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                where = f"{path}, line {number}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataSourceError(f"{where}: not UTF-8 text (byte {err.start}: "
                                          f"{err.object[err.start:err.start + 1]!r}); re-save "
                                          "the file as UTF-8") from None
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as err:
                    raise DataSourceError(f"{where}: invalid JSON ({err.msg} at column "
                                          f"{err.colno}); each line must be one JSON object") \
                        from None
                if not isinstance(row, dict):
                    raise DataSourceError(f"{where}: expected a JSON object, got a "
                                          f"{_json_type(row)}")
                for key, value in row.items():
                    if value is None:
                        continue
                    kind = _json_type(value)
                    seen = first_type.setdefault(key, (kind, number))
                    if seen[0] != kind:
                        raise DataSourceError(
                            f"{where}: field {key!r} is a {kind} ({value!r:.60}), but line "
                            f"{seen[1]} has a {seen[0]}; make the field one type in every row")
                rows.append(row)
    except (OSError, EOFError, zlib.error) as err:
        raise DataSourceError(f"could not read {path}: {type(err).__name__}: {err}") from err
    if not rows:
        raise DataSourceError(f"{path}: no rows (the file is empty); put one JSON object per "
                              "line in it, or remove it")
    return rows


def load_hub(task: str, split: str, hub_path: str | None, hub_name: str | None, source: str):
    """Load one split of a hub dataset; fail with one message naming both data options."""
    options = (
        f"Either set data_dir (or ${DATA_DIR_ENV}) to a folder laid out as "
        f"<dir>/{task}/<split>.jsonl[.gz] with the hub's field names (e.g. /work/shared/data)"
    )
    if hub_path is None:
        raise DataSourceError(
            f"{task}: split {split!r} has no data source: data_dir is not set and this task "
            f"has no hub dataset. {options}."
        )
    import datasets

    hub = f"{hub_path}" + (f" (config {hub_name})" if hub_name else "")
    try:
        try:
            return datasets.load_dataset(hub_path, hub_name, split=source)
        except RuntimeError as err:
            if "scripts are no longer supported" not in str(err):
                raise
            # script-based hub datasets (datasets >= 4): use the hub's parquet conversion
            return datasets.load_dataset(
                hub_path, hub_name, split=source, revision=PARQUET_REVISION
            )
    except Exception as err:  # noqa: BLE001 - one message for every hub failure
        raise DataSourceError(
            f"{task}: split {split!r}: no data source reachable. data_dir is not set (neither "
            f"the data_dir argument nor ${DATA_DIR_ENV}) and loading the hub dataset {hub}, "
            f"split {source!r} failed ({type(err).__name__}: {err}). {options}, or allow hub "
            "access (network, and HF_DATASETS_OFFLINE / HF_HUB_OFFLINE unset)."
        ) from err


def local_fingerprint(path: Path) -> str:
    """The identity of a local file: its path and a hash of its content.

    Metadata alone (size, modification time) misses an in-place edit that keeps the size
    within one timestamp tick, or one whose time was restored; hashing reads the file once
    (hundreds of MB a second), still without parsing it.
    """
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{path.resolve()}:{digest.hexdigest()}"


def split_indices(
    rule: SplitRule, split: str, n: int, seed: int, holdout: int, task: str = ""
) -> list[int]:
    """Row indices of the source split that make up ``split`` under ``rule`` (sorted).

    Args:
        rule: the task's split rule (see the module docstring).
        split: ``train``, ``dev`` or ``test``.
        n: number of rows in the source split the derived split is cut from.
        seed: permutation seed.
        holdout: dev size for ``train_holdout``.
        task: task name, for error messages.
    """
    if rule == "halve_validation" and split in ("dev", "test"):
        perm = np.random.default_rng(seed).permutation(n)
        part = perm[: n // 2] if split == "dev" else perm[n // 2 :]
        return sorted(int(i) for i in part)
    if rule == "train_holdout" and split in ("train", "dev"):
        if not 0 < holdout < n:
            raise ValueError(
                f"{task}: cannot hold out {holdout} dev rows from a train split of {n} rows"
            )
        perm = np.random.default_rng(seed).permutation(n)
        part = perm[:holdout] if split == "dev" else perm[holdout:]
        return sorted(int(i) for i in part)
    return list(range(n))


def subset_positions(n: int, limit: int | None, seed: int) -> list[int]:
    """Deterministic subset of ``limit`` positions out of ``n`` (all when ``limit`` is None).

    Uses a permutation seeded by ``(seed, salt)``, independent of the split permutation, and
    returns the chosen positions sorted.
    """
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 0:
        raise ValueError(f"max_*_examples must be >= 0, got {limit}")
    perm = np.random.default_rng([seed, _SUBSET_SALT]).permutation(n)
    return sorted(int(i) for i in perm[:limit])
