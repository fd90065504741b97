"""Checks of a task's declarations, run when the datamodule is set up, before any row is read.

Each finds one kind of mistake *in the task* (not in the data) and raises
:class:`~datamodules.errors.TaskDefinitionError` saying what to change:

* :func:`check_declarations` (no data needed): the template parses, ``metric: accuracy`` has
  label words;
* :func:`check_split_files`: every source file the stage's splits are cut from exists (all
  are checked before the first split is loaded, and the split rule is named in the message);
  a labelled file the split rule does not use is reported;
* :func:`check_source` (a source split's schema and label column, before its rows are read):
  every placeholder names a field, then the ``truncate_field`` is one of the placeholders (a
  misspelt placeholder is reported as such, not as a truncation mistake), the label words
  cover the label set of the whole source file (not of a sample: the ids ``0..k`` it holds; a
  stray id after a gap is a bad row, see :func:`_prefix`), the response field exists.

Tasks that compute their placeholder values (an overridden ``prompt_fields``) or their
response (an overridden ``response``) are checked only on what they declare.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from datamodules import sources as src
from datamodules.errors import MissingSplitError, TaskDefinitionError
from datamodules.task_spec import TaskSpec
from datamodules.templates import placeholders

_WHERE = "in the task (its configs/tasks/*.yaml or its class)"


def _fields_from_template(task: TaskSpec) -> bool:
    """True when placeholder values are the same-named row fields (the default hook)."""
    return type(task).prompt_fields is TaskSpec.prompt_fields


def _response_from_field(task: TaskSpec) -> bool:
    return type(task).response is TaskSpec.response


def check_declarations(task: TaskSpec) -> None:
    """Template, truncation field and metric, checked against each other (no data read)."""
    name = task.task
    try:
        names = placeholders(task.template)
    except ValueError as err:
        raise TaskDefinitionError(
            f"task {name!r}: the template is not a valid str.format template ({err}). Fix "
            f"`template` {_WHERE}: placeholders are {{field}}, literal braces are {{{{ }}}}."
        ) from None
    if not task.template.strip():
        raise TaskDefinitionError(f"task {name!r}: the template is empty. Set `template` "
                                  f"{_WHERE}, e.g. 'Question: {{question}}'.")
    if not _fields_from_template(task):  # else after the placeholders are checked on the data
        _check_truncate_field(task, names)
    if task.metric == "accuracy" and not task.label_words:
        raise TaskDefinitionError(
            f"task {name!r}: metric 'accuracy' compares the generated label word, but the task "
            f"declares no label_words. Add `label_words` {_WHERE} (label id -> word), or "
            "choose a text metric (rouge_l, f1_em)."
        )


def _check_truncate_field(task: TaskSpec, names: list[str]) -> None:
    if task.truncate_field is not None and task.truncate_field not in names:
        raise TaskDefinitionError(
            f"task {task.task!r}: truncate_field {task.truncate_field!r} is not a placeholder of "
            f"the template (placeholders: {', '.join(names) or 'none'}). Set `truncate_field` "
            f"{_WHERE} to the long-context placeholder, or to null."
        )


def check_split_files(task: Any, splits: tuple[str, ...]) -> None:
    """Every local source file needed by ``splits`` exists (one message listing all missing,
    before any split is loaded). Tasks read from the hub (no data folder) are not checked."""
    root, origin = src.resolve_data_dir(task.hparams.data_dir)
    if root is None:
        return
    folder = task.folder or task.task
    missing: dict[str, list[str]] = {}
    for split in splits:
        source = task.source_of(split)
        if src.local_file(root, folder, source) is None:
            missing.setdefault(source, []).append(split)
    if not missing:
        return
    wanted = "; ".join(
        f"split{'s' if len(needs) > 1 else ''} {', '.join(repr(n) for n in needs)} need"
        f"{'' if len(needs) > 1 else 's'} the source file {root / folder / source}.jsonl "
        "(or .jsonl.gz)" for source, needs in missing.items()
    )
    present = sorted(p.name for p in (root / folder).glob("*.jsonl*")) if (
        root / folder).is_dir() else []
    hub = f", or unset data_dir/${src.DATA_DIR_ENV} to use the hub's {task.hub_path}" if (
        task.hub_path) else ""
    raise MissingSplitError(
        f"task {task.task!r} with split_rule {task.split_rule!r}: {wanted}, which is missing "
        f"(data folder from {origin}; {root / folder} holds: {', '.join(present) or 'nothing'})."
        f" Put the file there{hub}; or change `split_rule` / `test_source` / `folder` {_WHERE} "
        f"to use the files that exist (split rules: {', '.join(_RULES)})."
    )


_RULES = ("halve_validation", "train_holdout", "native", "predict_only")


def first_row(path: Path) -> dict[str, Any] | None:
    """The first JSON object of a ``.jsonl[.gz]`` file (None when empty or unreadable)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else None
    except (OSError, ValueError):
        return None
    return None


def unused_labelled_files(task: Any) -> list[Path]:
    """Local files with labels (or responses) that the task's split rule never reads."""
    root, _ = src.resolve_data_dir(task.hparams.data_dir)
    if root is None or task.split_rule == "predict_only":
        return []
    used = {task.source_of(split) for split in task.available_splits()}
    gold = task.label_field if task.label_words else task.response_field
    out = []
    for source in ("train", "validation", "test"):
        path = src.local_file(root, task.folder or task.task, source)
        if source in used or path is None or gold is None:
            continue
        row = first_row(path)
        if row is not None and row.get(gold) not in (None, -1, ""):
            out.append(path)
    return out


def check_source(task: TaskSpec, split: str, data: Any, where: str) -> None:
    """The source split's fields and labels against the declarations (before rows are read).

    Args:
        task: the task.
        split: the derived split being loaded (for the message).
        data: the source split (a ``datasets.Dataset``: its schema and label column are used).
        where: the file or hub split it came from.
    """
    columns = list(getattr(data, "column_names", None) or [])
    if not columns:
        return
    name = task.task
    shown = ", ".join(sorted(columns))
    if _fields_from_template(task):
        unknown = [p for p in placeholders(task.template) if p not in columns]
        if unknown:
            named = ", ".join("{" + u + "}" for u in unknown)
            raise TaskDefinitionError(
                f"task {name!r}: template placeholder(s) {named}"
                f" name no field of {where} (its fields: {shown}). Fix `template` {_WHERE}: "
                "each {placeholder} must be one of those field names."
            )
        _check_truncate_field(task, placeholders(task.template))
    if not _response_from_field(task):
        return
    if task.label_words:
        if task.label_field not in columns:
            raise TaskDefinitionError(
                f"task {name!r}: label_field {task.label_field!r} is not a field of {where} "
                f"(its fields: {shown}). Set `label_field` {_WHERE}."
            )
        ids = {v for v in data.unique(task.label_field)
               if isinstance(v, int) and not isinstance(v, bool)}
        label_set = list(range(_prefix(ids)))
        if len(label_set) > len(task.label_words):
            uncovered = label_set[len(task.label_words):]
            column = data[task.label_field] if not isinstance(data, list) else \
                [row.get(task.label_field) for row in data]
            first = {label: column.index(label) for label in uncovered}
            rows = ", ".join(f"label {label} first at row {row}" for label, row in first.items())
            raise TaskDefinitionError(
                f"task {name!r}: {where} has the labels {label_set}, but label_words has "
                f"{len(task.label_words)} word(s) {list(task.label_words)}; no word for "
                f"{uncovered} ({rows}). Add a word per label id to `label_words` "
                f"{_WHERE}, in id order (or fix those rows if the label is a typo)."
            )
    elif task.response_field is not None and task.response_field not in columns:
        raise TaskDefinitionError(
            f"task {name!r}: response_field {task.response_field!r} is not a field of {where} "
            f"(its fields: {shown}). Set `response_field` {_WHERE} to the field holding the "
            "answer to generate."
        )


def _prefix(ids: set[int]) -> int:
    """Size of the label set: the ids ``0..k-1`` all present in the file. An id after a gap
    (a stray ``7`` among ``0, 1``) or a negative one (``-1``: unlabelled) is a bad row, left to
    the row check, not a missing label word."""
    k = 0
    while k in ids:
        k += 1
    return k
