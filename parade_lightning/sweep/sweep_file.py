"""The sweep file: what a grid of ordinary ``parade fit`` runs is made of.

A sweep file is YAML (see ``docs/sweeps.md`` for the full reference)::

    name: cpu_smollm2
    output: runs/sweeps/cpu_smollm2          # relative to the root (the current directory)
    backbone: smollm2-135m                   # --model.backbone, also used to count parameters
    configs: [configs/base.yaml, "{method}", "{task}", configs/cpu_quick.yaml]
    overrides: {trainer.max_steps: 50}       # shared CLI overrides (dotted keys)
    env: {PARADE_DATA_DIR: /work/shared/data}
    axes:
      task: [rte, sst2]                      # -> configs/tasks/<name>.yaml
      method: [parade, lora, {name: ia3, config: configs/methods/ia3_paper.yaml}]
      seed: [1, 2]                           # -> --seed_everything
      model.method.init_args.rank: [6, 12]   # any dotted key is an override axis
      budget: [1.0e5, {class_path: methods.Parade, init_args: {rank: 12}}]

This module only parses and validates; :mod:`parade_lightning.sweep.plan` expands the axes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Axis names with a meaning of their own; any other name with a dot is a CLI override key.
SPECIAL_AXES = ("task", "method", "seed", "budget")
_CONFIG_DIRS = {"task": "configs/tasks", "method": "configs/methods"}
_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


class SweepError(ValueError):
    """A sweep file that cannot be expanded into runs."""


@dataclass
class AxisValue:
    """One value of one axis, as it contributes to a run.

    Attributes:
        axis: the axis name (``task``, ``method``, ``seed``, ``budget`` or another name).
        label: path-safe name used in the run's directory (``rte``, ``lora``, ``rank=12``).
        configs: config files this value adds (task and method axes).
        overrides: dotted CLI keys and values this value adds.
        match: budget target: a parameter count, or a method spec ``{class_path, init_args}``
            whose count is the target (method entries with ``match:`` and the budget axis).
        knob: name of the method argument solved by budget matching (None: the default knob).
        display: the name shown in reports (method entries may set ``label:``).
        raw: the value as written in the sweep file (kept in ``run.json``).
    """

    axis: str
    label: str
    configs: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    match: float | dict[str, Any] | None = None
    knob: str | None = None
    display: str | None = None
    raw: Any = None


@dataclass
class Sweep:
    """A parsed sweep file (paths are absolute)."""

    name: str
    root: Path
    output: Path
    configs: list[str]
    axes: dict[str, list[AxisValue]]
    overrides: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    backbone: str | None = None
    count_backbone: str | dict[str, Any] | None = None
    timeout: float | None = None
    report: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def safe_label(text: str) -> str:
    """A file-name-safe version of ``text`` (runs of other characters become ``_``)."""
    return _SAFE.sub("_", str(text)).strip("_") or "_"


def format_value(value: Any) -> str:
    """Short, exact text of an axis value for labels (``1e-05``, ``true``, ``12``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return str(value)


def load_sweep(path: str | Path, root: str | Path | None = None,
               output: str | Path | None = None) -> Sweep:
    """Read a sweep file.

    Args:
        path: the YAML file.
        root: where runs execute and relative paths resolve (default: the file's ``root:``
            key, else the current directory).
        output: override of the file's ``output:`` folder.
    """
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file is a mapping, got {type(data).__name__}")
    return parse_sweep(data, root=root, output=output, path=path.resolve())


def parse_sweep(data: dict[str, Any], root: str | Path | None = None,
                output: str | Path | None = None, path: Path | None = None) -> Sweep:
    """Validate a sweep mapping (the content of a sweep file)."""
    known = {"name", "root", "output", "configs", "axes", "overrides", "env", "backbone",
             "count_backbone", "timeout", "report", "slurm"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SweepError(f"unknown sweep keys {unknown}; known: {sorted(known)}")
    base = Path(os.path.expandvars(str(root or data.get("root") or os.getcwd()))).resolve()
    name = str(data.get("name") or (path.stem if path else "sweep"))
    out = Path(os.path.expandvars(str(output or data.get("output") or f"runs/sweeps/{name}")))
    axes_data = data.get("axes") or {}
    if not isinstance(axes_data, dict) or not axes_data:
        raise SweepError("a sweep needs `axes:` (a mapping of axis name -> list of values)")
    axes = {axis: _parse_axis(axis, values, base) for axis, values in axes_data.items()}
    configs = [_resolve(c, base) if not _is_placeholder(c) else c
               for c in data.get("configs") or []]
    for axis in ("method", "task"):  # their configs compose after the listed ones if unplaced
        if axis in axes and "{" + axis + "}" not in configs:
            configs.append("{" + axis + "}")
    return Sweep(
        name=name, root=base, output=out if out.is_absolute() else base / out,
        configs=configs, axes=axes, overrides=_overrides(data.get("overrides")),
        env={str(k): os.path.expandvars(str(v)) for k, v in (data.get("env") or {}).items()},
        backbone=data.get("backbone"), count_backbone=data.get("count_backbone"),
        timeout=data.get("timeout"), report=dict(data.get("report") or {}),
        slurm=dict(data.get("slurm") or {}), path=path,
    )


def _is_placeholder(entry: str) -> bool:
    return isinstance(entry, str) and entry.startswith("{") and entry.endswith("}")


def _resolve(entry: str, base: Path) -> str:
    path = Path(os.path.expandvars(str(entry))).expanduser()
    return str(path if path.is_absolute() else base / path)


def _overrides(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SweepError(f"overrides must be a mapping of dotted keys, got {data!r}")
    return {str(k).lstrip("-"): v for k, v in data.items()}


def _parse_axis(axis: str, values: Any, base: Path) -> list[AxisValue]:
    if not isinstance(values, list) or not values:
        raise SweepError(f"axis {axis!r} needs a non-empty list of values")
    parsed = [_parse_value(axis, v, base) for v in values]
    labels = [v.label for v in parsed]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise SweepError(f"axis {axis!r} has values with the same label {duplicates}; "
                         "give them distinct `name:`s")
    return parsed


def _parse_value(axis: str, value: Any, base: Path) -> AxisValue:
    if axis in ("task", "method"):
        return _config_value(axis, value, base)
    if axis == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SweepError(f"seed values are integers, got {value!r}")
        return AxisValue(axis, f"seed{value}", overrides={"seed_everything": value}, raw=value)
    if axis == "budget":
        return _budget_value(value)
    if "." in axis:  # a dotted CLI key: scalar values
        if isinstance(value, dict):
            raise SweepError(f"axis {axis!r} is an override key; its values are scalars")
        label = safe_label(f"{axis.rsplit('.', 1)[-1]}={format_value(value)}")
        return AxisValue(axis, label, overrides={axis: value}, raw=value)
    if not isinstance(value, dict):  # a named axis: bundles of overrides (+ configs)
        raise SweepError(f"values of axis {axis!r} are mappings of dotted keys (or give the "
                         f"axis a dotted name); got {value!r}")
    bundle = dict(value)
    name = bundle.pop("name", None)
    configs = [_resolve(c, base) for c in bundle.pop("configs", [])]
    overrides = _overrides(bundle)
    if name is None:
        name = ",".join(f"{k.rsplit('.', 1)[-1]}={format_value(v)}" for k, v in overrides.items())
    return AxisValue(axis, safe_label(name), configs=configs, overrides=overrides, raw=value)


def _config_value(axis: str, value: Any, base: Path) -> AxisValue:
    """``rte`` / ``configs/tasks/rte.yaml`` / ``{name, config, overrides, match, knob, label}``."""
    entry = {"config": value} if isinstance(value, str) else dict(value or {})
    allowed = {"name", "config", "configs", "overrides", "label"}
    if axis == "method":
        allowed |= {"match", "knob"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise SweepError(f"{axis} entry {value!r}: unknown keys {unknown}")
    configs = list(entry.get("configs") or [])
    if entry.get("config"):
        configs.insert(0, entry["config"])
    if not configs:
        raise SweepError(f"{axis} entry {value!r} names no config")
    resolved = [_config_path(axis, c, base) for c in configs]
    name = entry.get("name") or Path(resolved[0]).stem
    for c in resolved:
        if not Path(c).is_file():
            raise SweepError(f"{axis} {name!r}: config file not found: {c}")
    match = entry.get("match")
    if match is not None and not isinstance(match, (int, float, dict)):
        raise SweepError(f"method {name!r}: match is a count or a method spec, got {match!r}")
    return AxisValue(axis, safe_label(name), configs=resolved,
                     overrides=_overrides(entry.get("overrides")), match=match,
                     knob=entry.get("knob"), display=entry.get("label"), raw=value)


def _config_path(axis: str, entry: str, base: Path) -> str:
    """A bare name (no ``/``, no ``.yaml``) means ``configs/<axis>s/<name>.yaml``."""
    if "/" not in entry and not entry.endswith((".yaml", ".yml")):
        entry = f"{_CONFIG_DIRS[axis]}/{entry}.yaml"
    return _resolve(entry, base)


def _budget_value(value: Any) -> AxisValue:
    """A count (``1e5``), a method spec whose count is the target, or ``{name, match}``."""
    entry = dict(value) if isinstance(value, dict) else {"match": value}
    if "class_path" in entry:
        entry = {"match": entry}
    name, match = entry.get("name"), entry.get("match")
    if isinstance(match, bool) or not isinstance(match, (int, float, dict)):
        raise SweepError(f"budget values are counts or method specs, got {value!r}")
    if name is None:
        if isinstance(match, dict):
            short = str(match.get("class_path", "?")).rsplit(".", 1)[-1]
            args = ",".join(f"{k}{format_value(v)}" for k, v in
                            (match.get("init_args") or {}).items())
            name = f"match={short}" + (f"-{args}" if args else "")
        else:
            name = f"budget={int(round(match))}"
    return AxisValue("budget", safe_label(name), match=match, raw=value)
