"""``TaskDataModule``: loading, splitting, templating, tokenising, caching and collation.

A task subclass only declares what differs (the class attributes of
:class:`~datamodules.task_spec.TaskSpec`: source, fields, template, verbaliser, split rule, metric,
generation length) and, when needed, overrides one of its row hooks (``prompt_fields``, ``query``,
``response``, ``targets``, ``group_rows``). See ``datamodules/README.md``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from datamodules import cache as cache_io
from datamodules import encoding as enc
from datamodules import sources as src
from datamodules import task_checks as checks
from datamodules import task_spec as spec_module
from datamodules import templates as templates_module
from datamodules.collate import Collator, ExampleDataset
from datamodules.errors import StageNotSupportedError
from datamodules.metrics import METRICS
from datamodules.resume import (
    EpochShuffleSampler,
    ResumableDataLoader,
    process_share,
    train_state,
)
from datamodules.task_spec import RawRow, TaskSpec
from datamodules.templates import CHAT_STYLES, ChatStyle, pad_id
from methods.backbones import load_tokenizer

_STAGE_SPLITS = {
    "fit": ("train", "dev"), "validate": ("dev",), "test": ("test",), "predict": ("test",),
}


class TaskDataModule(TaskSpec, L.LightningDataModule):
    """Base datamodule of one prompt-response task (appendix B/C of the paper).

    Args:
        backbone: backbone name whose tokenizer is used (linked from ``model.backbone`` by the
            CLI; task YAMLs do not set it).
        data_dir: local data folder (``<dir>/<task>/<split>.jsonl[.gz]``); falls back to
            ``$PARADE_DATA_DIR``, else the hub dataset is loaded.
        chat_style: ``llama2`` (the paper's template), ``tokenizer`` (the backbone's chat
            template) or ``plain`` (see :mod:`datamodules.templates`).
        max_length: maximum tokens of prompt + response + EOS (appendix E: 2048).
        batch_size: training micro-batch. The paper's effective batch (16 below 10k training
            rows, else 128; :attr:`paper_batch_size`) is reached with the Trainer's
            ``accumulate_grad_batches`` (:attr:`accumulate_grad_batches` suggests the value).
        eval_batch_size: batch size of the val/test/predict loaders.
        padding_side: side of the dynamic padding (``right`` or ``left``).
        seed: seed of the split permutation, the ``max_*_examples`` subsets and train shuffling.
        num_workers: DataLoader workers.
        on_bad_row: ``raise`` stops at the first bad row; ``skip`` drops bad rows and counts them
            in ``dm.stats[split]``.
        max_train_examples: deterministic subset of the train split (None: all).
        max_dev_examples: deterministic subset of the dev split.
        max_test_examples: deterministic subset of the test split (also used by predict).
        cache_dir: folder of the tokenised-split cache (None: ``$PARADE_CACHE_DIR`` or
            ``~/.cache/parade_lightning/datamodules``); local json is also prepared there.
        use_cache: read/write the tokenised-split cache.
        max_new_tokens: override of the task's generation length.
        group_by_length: train batches of similar length (as the Hugging Face Trainer's option
            of that name; see :mod:`datamodules.resume`): the same rows per window of 50
            batches, far less padding. Measured on 240 batches of 8 at ``max_length`` 384:
            SQuAD pads to 318 tokens on average at random and to 205 grouped (SST-2 70 -> 54).
    """

    registry: ClassVar[dict[str, type[TaskDataModule]]] = {}
    #: Names of a task subclass's own ``__init__`` options that change its examples (E2E's
    #: ``e2e_protocol``); their values are part of the tokenised-split cache key.
    example_options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.metric is not None and cls.metric not in METRICS:
            raise TypeError(f"task class {cls.__name__}: metric {cls.metric!r} is not one of "
                            f"{sorted(METRICS)}")
        if cls.__dict__.get("task"):
            TaskDataModule.registry[cls.task] = cls

    def __init__(
        self,
        backbone: str = "smollm2-135m",
        data_dir: str | None = None,
        chat_style: ChatStyle = "llama2",
        max_length: int = 2048,
        batch_size: int = 16,
        eval_batch_size: int = 16,
        padding_side: Literal["right", "left"] = "right",
        seed: int = 42,
        num_workers: int = 0,
        on_bad_row: Literal["raise", "skip"] = "raise",
        max_train_examples: int | None = None,
        max_dev_examples: int | None = None,
        max_test_examples: int | None = None,
        cache_dir: str | None = None,
        use_cache: bool = True,
        max_new_tokens: int | None = None,
        group_by_length: bool = False,
    ) -> None:
        super().__init__()
        if not self.task:
            raise TypeError("TaskDataModule is a base class; use a task subclass (e.g. RTE)")
        _check(chat_style in CHAT_STYLES, f"chat_style must be one of {CHAT_STYLES}")
        _check(padding_side in ("right", "left"), "padding_side must be 'right' or 'left'")
        _check(on_bad_row in ("raise", "skip"), "on_bad_row must be 'raise' or 'skip'")
        _check(max_length > 0 and batch_size > 0 and eval_batch_size > 0, "sizes must be > 0")
        self.save_hyperparameters()
        if max_new_tokens is not None:
            self.max_new_tokens = max_new_tokens
        self._tokenizer = None
        self._sources: dict[str, tuple[Any, str]] = {}
        self._examples: dict[str, list[dict[str, Any]]] = {}
        self._train_resume: dict[str, int] = {}  # restored train position (datamodules/resume.py)
        self.stats: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ properties

    @property
    def tokenizer(self):
        """The backbone's tokenizer, loaded on first use (may be assigned directly)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.hparams.backbone)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self._examples.clear()
        self.stats.clear()

    @property
    def accumulate_grad_batches(self) -> int:
        """Gradient accumulation that turns ``batch_size`` into the paper's effective batch."""
        return max(1, self.paper_batch_size // self.hparams.batch_size)

    # ------------------------------------------------------------------ loading

    def _local_path(self, split: str) -> Path | None:
        """The local file of a derived split's source (None: no data folder, use the hub)."""
        root, origin = src.resolve_data_dir(self.hparams.data_dir)
        if root is None:
            return None
        folder, source = self.folder or self.task, self.source_of(split)
        path = src.local_file(root, folder, source)
        if path is None:
            hub = self.hub_path and f"{self.hub_path} ({self.hub_name or 'default'})"
            raise src.missing_local_error(self.task, split, root, folder, source, origin, hub)
        return path

    def _source(self, split: str) -> tuple[Any, str]:
        """The source dataset of a derived split and its fingerprint (memoised)."""
        source = self.source_of(split)
        if source not in self._sources:
            path = self._local_path(split)
            if path is not None:
                data = src.load_local(path)
                self._sources[source] = (data, src.local_fingerprint(path))
            else:
                data = src.load_hub(self.task, split, self.hub_path, self.hub_name, source)
                self._sources[source] = (data, f"hub:{getattr(data, '_fingerprint', '')}")
        return self._sources[source]

    def _fingerprint(self, split: str) -> str:
        """The source's identity; a local file's is a hash of its bytes, without parsing it."""
        path = self._local_path(split)
        return src.local_fingerprint(path) if path is not None else self._source(split)[1]

    def _cache_root(self) -> Path:
        if self.hparams.cache_dir:
            return Path(self.hparams.cache_dir).expanduser()
        return cache_io.default_cache_dir()

    def _limit(self, split: str) -> int | None:
        return self.hparams[f"max_{split}_examples"]

    def _cache_path(self, split: str, fingerprint: str) -> Path:
        material = {
            "task": self.task, "split": split, "source": fingerprint,
            "code": self._code_identity(), "spec": self._spec_identity(),
            "tokenizer": cache_io.tokenizer_identity(self.tokenizer),
            "hparams": {k: self.hparams[k] for k in ("chat_style", "max_length", "seed",
                                                     "on_bad_row", *self.example_options)},
            "limit": self._limit(split),
        }
        return self._cache_root() / self.task / f"{split}-{cache_io.cache_key(material)}.npz"

    def _code_identity(self) -> list[str]:
        """Source of the modules that turn rows into examples (part of the cache key).

        The shared machinery, each module defining a class of this task's hierarchy, and the
        project modules those use (e.g. the WikiSQL target renderer in the metrics package),
        so a code change anywhere on that path invalidates the cache.
        """
        modules = {m.__name__: m for m in (enc, src, spec_module, templates_module)}
        for klass in type(self).__mro__:
            if not issubclass(klass, TaskDataModule) or (home := inspect.getmodule(klass)) is None:
                continue
            modules[home.__name__] = home
            for value in vars(home).values():
                used = inspect.getmodule(value)
                if used is not None and used.__name__.startswith(_PROJECT_MODULES):
                    modules[used.__name__] = used
        return [_source_text(modules[name]) for name in sorted(modules)]

    def _spec_identity(self) -> dict[str, Any]:
        """The task's declarations as resolved on this class (constants included)."""
        return {name: getattr(self, name) for name in spec_module.TaskSpec.__annotations__
                if name not in _NOT_IN_EXAMPLES}

    def _check_split(self, split: str, stage: str | None = None) -> None:
        if split not in self.available_splits():
            what = f"stage {stage!r}" if stage else f"the {split} dataloader"
            raise StageNotSupportedError(
                f"{self.task}: {what} needs the {split!r} split, which this task does not have "
                f"(it has: {', '.join(self.available_splits())}). {self._split_hint()}"
            )

    def _split_hint(self) -> str:
        return ""

    def _load(self, split: str) -> list[dict[str, Any]]:
        """Build (or read from cache) the examples of one split."""
        if split in self._examples:
            return self._examples[split]
        self._check_split(split)
        path = None
        if self.hparams.use_cache:  # a hit needs neither the rows nor the split indices
            path = self._cache_path(split, self._fingerprint(split))
        cached = cache_io.load_split(path) if path is not None else None
        if cached is not None:
            examples, stats = cached
        else:
            data, _ = self._source(split)
            where = self._local_path(split) or f"hub {self.hub_path} {self.source_of(split)}"
            checks.check_source(self, split, data, str(where))
            indices = src.split_indices(
                self.split_rule, split, len(data), self.hparams.seed,
                self.holdout_size(len(data)), self.task,
            )
            source = self.source_of(split)
            raw = [
                RawRow(source, i, row)
                for i, row in zip(indices, data.select(indices).to_list(), strict=True)
            ]
            raw = self.group_rows(split, raw)
            keep = src.subset_positions(len(raw), self._limit(split), self.hparams.seed)
            options = enc.EncodeOptions(self.tokenizer, self.hparams.chat_style,
                                        self.hparams.max_length, self.hparams.on_bad_row)
            examples, split_stats = enc.encode_rows(
                self, options, split, [raw[i] for i in keep], len(raw)
            )
            stats = split_stats.as_dict()
            if path is not None:
                cache_io.save_split(path, examples, stats)
        self._examples[split], self.stats[split] = examples, stats
        self._report(split, stats, cached is not None)
        return examples

    def _report(self, split: str, stats: dict[str, Any], from_cache: bool) -> None:
        rank_zero_info(
            f"{self.task} {split}: {stats['examples']} examples from {stats['rows']} rows "
            f"(split has {stats['split_rows']}); truncated {stats['truncated']}, dropped "
            f"{stats['dropped']}{' (cached)' if from_cache else ''}"
        )
        if stats["dropped"]:
            rank_zero_warn(
                f"{self.task} {split}: dropped {stats['dropped']} bad rows (on_bad_row='skip'; "
                f"by field: {stats['dropped_by_field']})"
            )

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, stage: str | None = None) -> None:
        """Load the splits a stage needs (``fit``: train+dev, ``test``/``predict``: test...)."""
        if self.split_rule == "predict_only" and stage not in (None, "predict"):
            raise StageNotSupportedError(
                f"{self.task} is predict-only: stage {stage!r} is not supported, use predict"
                f". {self._split_hint()}"
            )
        if stage is None:
            splits: tuple[str, ...] = self.available_splits()
        else:
            splits = _STAGE_SPLITS.get(stage, ())
            for split in splits:
                self._check_split(split, stage)
        checks.check_declarations(self)  # task mistakes first, before any row is read
        checks.check_split_files(self, splits)
        for path in checks.unused_labelled_files(self) if stage in ("fit", "test") else ():
            rank_zero_warn(f"{self.task}: {path} has gold labels but split_rule "
                           f"{self.split_rule!r} never reads it (set split_rule: native to use it)")
        for split in splits:
            self._load(split)

    def prompt(self, row: dict[str, Any]) -> str:
        """The prompt text of one new row (no response needed): the template filled with the
        row's fields, in this datamodule's chat style, ready for ``generate``."""
        query = self.query(self.prompt_fields(row))
        return templates_module.render_prompt(self.tokenizer, self.hparams.chat_style, query)

    def split_examples(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Processed examples of a split (``prompt_ids``, ``response_ids``, ``targets``, ...).

        Args:
            split: ``train``, ``dev`` or ``test``.
            limit: return a deterministic sample of at most this many (seeded by ``seed``).
        """
        examples = self._load(split)
        keep = src.subset_positions(len(examples), limit, self.hparams.seed)
        return [examples[i] for i in keep]

    def dev_examples(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Processed dev examples (for generation-based evaluation on a sample)."""
        return self.split_examples("dev", limit)

    def _loader(self, split: str, train: bool = False, prompt_only: bool = False) -> DataLoader:
        examples = self._load(split)  # checks that the task has the split
        workers = self.hparams.num_workers
        loader = (ResumableDataLoader if train else DataLoader)(
            ExampleDataset(examples),
            batch_size=self.hparams.batch_size if train else self.hparams.eval_batch_size,
            sampler=self._train_sampler(examples) if train else None,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=Collator(pad_id(self.tokenizer), self.hparams.padding_side, prompt_only),
        )
        if train:
            loader.position = self._train_position
            loader.load_state_dict(self._train_resume)
        return loader

    def _train_sampler(self, examples: list[dict[str, Any]]) -> EpochShuffleSampler:
        lengths = [len(e["prompt_ids"]) + len(e["response_ids"]) for e in examples] \
            if self.hparams.group_by_length else None
        return EpochShuffleSampler(len(examples), self.hparams.seed, *process_share(),
                                   lengths=lengths, batch_size=self.hparams.batch_size)

    def _train_position(self) -> tuple[int, int] | None:
        """(epoch, batches trained in it) of the attached trainer, for mid-epoch resumes."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def state_dict(self) -> dict[str, Any]:
        """The train loader's position, saved in checkpoints so a resume continues mid-epoch.

        Lightning also checkpoints the (stateful) loader itself, but restores it only when the
        train loader is first built after the restore; ``estimated_stepping_batches`` (the
        linear schedule's length) builds it before, so the datamodule carries the position.
        """
        return train_state(self._train_position(), self.hparams.batch_size)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_resume = dict(state_dict)

    def train_dataloader(self) -> DataLoader:
        """Shuffled train split (micro-batches of ``batch_size``)."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        """The dev split."""
        return self._loader("dev")

    def test_dataloader(self) -> DataLoader:
        """The test split."""
        if self.split_rule == "predict_only":
            raise StageNotSupportedError(
                f"{self.task} is predict-only: use trainer.predict (predict_dataloader)"
            )
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """The test split (MT-Bench: its questions), prompts only; labels are all -100."""
        return self._loader("test", prompt_only=True)


_PROJECT_MODULES = ("datamodules",)
_NOT_IN_EXAMPLES = ("metric", "max_new_tokens", "paper_batch_size")  # evaluation and batching


def _source_text(module: Any) -> str:
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):  # no source file (e.g. an interactive session)
        return module.__name__


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
