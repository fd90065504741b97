"""LightningDataModules for every task of the PARADE paper.

Tasks (class -> ``task``): :class:`SST2` sst2, :class:`RTE` rte, :class:`QNLI` qnli,
:class:`BoolQ` boolq, :class:`COPA` copa, :class:`ReCoRD` record, :class:`SQuAD` squad,
:class:`E2E` e2e, :class:`GSM8K` gsm8k, :class:`WikiSQL` wikisql, :class:`Alpaca` alpaca and
:class:`MTBench` mt_bench (predict only). All derive from :class:`TaskDataModule`, which owns
loading, splitting, templating, tokenising, caching and collation; ``TASKS`` maps task names to
classes. The batch contract, split rules and chat styles are documented in ``README.md`` next to
this file and in :mod:`datamodules.collate`, :mod:`datamodules.sources` and
:mod:`datamodules.templates`.

A task that is only declarations (template, label words or a response field, metric, split
rule) needs no Python: ``class_path: datamodules.DeclarativeTask`` with the declarations as
``init_args`` (:mod:`datamodules.declarative`; ``configs/tasks/mrpc.yaml``). Otherwise, adding a
task (say MRPC) is one short class, in a new module of this package or anywhere::

    # datamodules/mrpc.py
    from datamodules.task_datamodule import TaskDataModule

    class MRPC(TaskDataModule):
        \"\"\"MRPC. Split: 1,000 train rows (seeded) are dev, validation is test.\"\"\"

        task = "mrpc"                               # local folder <data_dir>/mrpc/
        hub_path, hub_name = "nyu-mll/glue", "mrpc"
        split_rule = "train_holdout"                # or halve_validation / native
        template = "sentence 1: {sentence1}\\nsentence 2: {sentence2}\\nAre they paraphrases?"
        truncate_field = "sentence1"                # the only field that may be shortened
        label_words = ("no", "yes")                 # label id -> response word
        metric = "accuracy"
        max_new_tokens = 5

Template placeholders are the hub's field names. Override ``prompt_fields`` / ``query`` /
``response`` / ``targets`` / ``group_rows`` (see :class:`datamodules.task_spec.TaskSpec`) only
when a task needs more than that. Modules of this package are imported automatically and their task
classes exported here (``datamodules.MRPC``); a class defined elsewhere works through its own
``class_path`` in a YAML (``class_path: mypkg.MRPC``). Add ``configs/tasks/mrpc.yaml`` to use it
from the CLI.
"""

from __future__ import annotations

import importlib
import pkgutil

from datamodules.declarative import DeclarativeTask
from datamodules.errors import (
    BadRowError,
    DataSourceError,
    MissingSplitError,
    RowProblem,
    StageNotSupportedError,
    TaskDefinitionError,
)
from datamodules.generation_tasks import E2E, GSM8K
from datamodules.glue import QNLI, RTE, SST2
from datamodules.instruct import Alpaca, MTBench
from datamodules.superglue import COPA, BoolQ, ReCoRD, SQuAD
from datamodules.task_datamodule import TaskDataModule
from datamodules.wikisql import WikiSQL

for _module in pkgutil.iter_modules(__path__):  # pick up task modules added later
    importlib.import_module(f"{__name__}.{_module.name}")

TASKS: dict[str, type[TaskDataModule]] = dict(TaskDataModule.registry)
globals().update({cls.__name__: cls for cls in TASKS.values()})


def get_task(name: str) -> type[TaskDataModule]:
    """The datamodule class of a task name (``rte``, ``mt_bench``...)."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


__all__ = [
    "TASKS",
    "Alpaca",
    "BadRowError",
    "BoolQ",
    "COPA",
    "DataSourceError",
    "DeclarativeTask",
    "E2E",
    "GSM8K",
    "MTBench",
    "MissingSplitError",
    "QNLI",
    "RTE",
    "ReCoRD",
    "RowProblem",
    "SQuAD",
    "SST2",
    "StageNotSupportedError",
    "TaskDataModule",
    "TaskDefinitionError",
    "WikiSQL",
    "get_task",
]
__all__ += sorted({cls.__name__ for cls in TASKS.values()} - set(__all__))
