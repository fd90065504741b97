"""Tasks declared in YAML: ``class_path: datamodules.DeclarativeTask``.

A task that is only a template, label words (or a response field to generate), fields, a metric
and a split rule needs no Python. ``configs/tasks/mrpc.yaml``::

    data:
      class_path: datamodules.DeclarativeTask
      init_args:
        task: mrpc                      # also the data folder <data_dir>/mrpc/
        hub_path: nyu-mll/glue          # used when no data folder is set
        hub_name: mrpc
        template: "sentence 1: {sentence1}\\nsentence 2: {sentence2}\\nAre they paraphrases?"
        label_words: ["no", "yes"]      # label id -> word (classification)
        metric: accuracy
        split_rule: train_holdout       # halve_validation / train_holdout / native
        truncate_field: sentence1
        max_new_tokens: 5
        batch_size: 16                  # and any other TaskDataModule argument

A generation task declares ``response_field`` (the field to generate) instead of
``label_words``, and a text metric (``rouge_l``, ``f1_em``). The declarations are exactly the
class attributes of :class:`~datamodules.task_spec.TaskSpec`; a task that needs custom row
hooks (``prompt_fields``, ``response``, ``targets``, ``group_rows``) is a Python subclass of
:class:`~datamodules.task_datamodule.TaskDataModule` instead. Each set of declarations becomes
its own task class (``DeclarativeTask[mrpc]``), so split rules, the cache key (the declarations
are part of it) and every check work as for a Python task. :meth:`DeclarativeTask.from_yaml`
builds one from a config file in Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from datamodules.errors import TaskDefinitionError
from datamodules.sources import SplitRule
from datamodules.task_datamodule import TaskDataModule
from datamodules.task_spec import Metric

#: The declarations a YAML task may set (``TaskSpec`` class attributes).
DECLARATIONS = ("task", "template", "label_words", "label_field", "response_field", "metric",
                "split_rule", "holdout", "test_source", "truncate_field", "folder", "hub_path",
                "hub_name", "paper_batch_size")
_CLASSES: dict[tuple, type] = {}


def _task_class(declared: dict[str, Any]) -> type[DeclarativeTask]:
    """The task class of a set of declarations (one class per distinct set)."""
    key = tuple(sorted(declared.items()))
    if key not in _CLASSES:
        attrs = {k: v for k, v in declared.items() if k != "task"}  # not in the registry
        cls = type(f"DeclarativeTask[{declared['task']}]", (DeclarativeTask,),
                   {**attrs, "__module__": __name__})
        cls.task = declared["task"]
        _CLASSES[key] = cls
    return _CLASSES[key]


def _declared(task: str, template: str, label_words, response_field, **rest: Any) -> dict:
    if not isinstance(task, str) or not task.strip() or "/" in task:
        raise TaskDefinitionError(f"task name {task!r}: give a non-empty name without '/' "
                                  "(it names the data folder and the cache folder)")
    if (label_words is None) == (response_field is None):
        raise TaskDefinitionError(
            f"task {task!r}: declare exactly one of `label_words` (classification: label id -> "
            "word) and `response_field` (generation: the field holding the text to generate); "
            f"got label_words={label_words!r}, response_field={response_field!r}"
        )
    if label_words is not None and (isinstance(label_words, str) or not label_words or not all(
            isinstance(w, str) and w.strip() for w in label_words)):
        raise TaskDefinitionError(f"task {task!r}: label_words must be a list of non-empty "
                                  f"words, one per label id, got {label_words!r}")
    words = tuple(label_words) if label_words is not None else None
    return {"task": task, "template": template, "label_words": words,
            "response_field": response_field, **rest}


class DeclarativeTask(TaskDataModule):
    """A task defined by its declarations alone (see the module docstring).

    Args:
        task: task name; the local data folder ``<data_dir>/<task>/`` unless ``folder`` is set.
        template: the prompt, a ``str.format`` template whose ``{placeholders}`` are field names.
        label_words: classification: the word of each label id (``label_field`` holds the id).
        response_field: generation: the field holding the response text.
        metric: ``accuracy`` (needs label words), ``f1_em``, ``rouge_l``... or None (loss only).
        split_rule: ``halve_validation``, ``train_holdout``, ``native`` or ``predict_only``.
        truncate_field: the one placeholder that may be shortened to fit ``max_length``.
        label_field: field holding the label id.
        holdout: dev rows held out of train under ``train_holdout``.
        test_source: the file test comes from under ``train_holdout`` (``validation``/``test``).
        folder: local folder name when it differs from ``task``.
        hub_path: Hugging Face dataset id used when no data folder is set.
        hub_name: its config name.
        paper_batch_size: effective batch the task is meant for (``accumulate_grad_batches``).
        **kwargs: every other :class:`TaskDataModule` argument (``batch_size``, ``data_dir``,
            ``max_new_tokens``, ``chat_style``...).
    """

    def __init__(
        self,
        task: str,
        template: str,
        label_words: list[str] | None = None,
        label_field: str = "label",
        response_field: str | None = None,
        metric: Metric | None = None,
        split_rule: SplitRule = "native",
        holdout: int = 1000,
        test_source: str = "validation",
        truncate_field: str | None = None,
        folder: str | None = None,
        hub_path: str | None = None,
        hub_name: str | None = None,
        paper_batch_size: int = 16,
        **kwargs: Any,
    ) -> None:
        declared = _declared(
            task, template, label_words, response_field, label_field=label_field,
            metric=metric, split_rule=split_rule, holdout=holdout, test_source=test_source,
            truncate_field=truncate_field, folder=folder, hub_path=hub_path,
            hub_name=hub_name, paper_batch_size=paper_batch_size)
        self.__class__ = _task_class(declared)  # class attributes = the declarations
        super().__init__(**kwargs)

    def __reduce__(self):
        """Pickle by declarations (the class is made at run time)."""
        declared = {name: getattr(self, name) for name in DECLARATIONS}
        return (_new_instance, (declared,), self.__dict__)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TaskDataModule:
        """The task of a config file (``data: {class_path, init_args}``, e.g.
        ``configs/tasks/mrpc.yaml``); ``overrides`` replace init args (``backbone=``...)."""
        config = yaml.safe_load(Path(path).read_text()) or {}
        data = config.get("data", config)
        if not str(data.get("class_path", "")).endswith("DeclarativeTask"):
            raise TaskDefinitionError(f"{path}: expected data.class_path: datamodules."
                                      f"DeclarativeTask, got {data.get('class_path')!r}")
        return DeclarativeTask(**{**(data.get("init_args") or {}), **overrides})


def _new_instance(declared: dict[str, Any]) -> DeclarativeTask:
    return object.__new__(_task_class(declared))
