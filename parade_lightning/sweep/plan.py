"""Expanding a sweep into runs: one ordinary ``parade fit`` command line per grid point.

The grid is the Cartesian product of the axes in the order the sweep file lists them, so a
run's index is stable (``parade sweep run-one --index i`` and SLURM array ids rely on it).
A run's directory is deterministic: ``<output>/<task>/<method>/<other axes>/seed<k>`` (``default``
when there are no other axes), which is also the TensorBoard log dir of the run
(``save_dir=<output>``, ``name=<task>``, ``version=<the rest>``).
"""

from __future__ import annotations

import itertools
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from methods.registry import effective_args, method_class
from parade_lightning.sweep import budget_match as budget_module
from parade_lightning.sweep.sweep_file import AxisValue, Sweep, SweepError, _is_placeholder

#: Entry point the runner executes (the ``parade`` console script's module).
CLI_MODULE = "parade_lightning.cli"


@dataclass
class Run:
    """One grid point: its identity, its ``parade fit`` arguments and budget solution."""

    index: int
    run_id: str
    values: dict[str, AxisValue]
    configs: list[str]
    overrides: dict[str, Any]
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    budget: dict[str, Any] | None = None

    @property
    def labels(self) -> dict[str, str]:
        """Axis name -> label (``{"task": "rte", "method": "lora", "seed": "seed1"}``)."""
        return {axis: value.label for axis, value in self.values.items()}

    def fit_args(self, resume_from: Path | None = None) -> list[str]:
        """Arguments after ``parade``: ``fit --config … --key value …``."""
        args = ["fit"]
        for config in self.configs:
            args += ["--config", config]
        for key, value in self.overrides.items():
            args += [f"--{key}", cli_value(value)]
        if resume_from is not None:
            args += ["--ckpt_path", str(resume_from)]
        return args

    def argv(self, resume_from: Path | None = None) -> list[str]:
        """The exact process the runner starts (this interpreter, the ``parade`` module)."""
        return [sys.executable, "-m", CLI_MODULE, *self.fit_args(resume_from)]

    def command(self, root: Path, resume_from: Path | None = None,
                inherited: dict[str, str] | None = None) -> str:
        """A shell line that repeats the run by hand (``cd``, environment, command).

        ``inherited``: variables of the sweep's own environment that the run depends on
        (``$PARADE_DATA_DIR`` …, see :func:`relevant_environment`), written before the
        sweep's ``env:``.
        """
        env = " ".join(f"{k}={shlex.quote(v)}"
                       for k, v in {**(inherited or {}), **self.env}.items())
        argv = " ".join(shlex.quote(a) for a in self.argv(resume_from))
        return f"cd {shlex.quote(str(root))} && " + (f"{env} " if env else "") + argv

    def record(self, sweep: Sweep, inherited: dict[str, str] | None = None) -> dict[str, Any]:
        """What ``run.json`` holds: identity, axis values, budget, command."""
        return {
            "sweep": sweep.name, "index": self.index, "run_id": self.run_id,
            "labels": self.labels,
            "axes": {a: _jsonable(v.raw) for a, v in self.values.items()},
            "method_label": self.values["method"].display if "method" in self.values else None,
            "budget": self.budget, "configs": self.configs,
            "overrides": {k: _jsonable(v) for k, v in self.overrides.items()},
            "command": self.command(sweep.root, inherited=inherited),
        }


#: Environment variables a run reads that are worth writing into its ``command.txt``.
RELEVANT_ENV = ("PARADE_", "HF_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


def relevant_environment(environ: dict[str, str]) -> dict[str, str]:
    """The variables of ``environ`` a run depends on (data and cache folders, threads, GPUs),
    without the sweep's test hook."""
    return {k: v for k, v in sorted(environ.items())
            if k.startswith(RELEVANT_ENV) and k != "PARADE_SWEEP_FAULTS"}


def cli_value(value: Any) -> str:
    """A CLI value jsonargparse reads back as the same YAML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_jsonable(value))
    return str(value)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def expand(sweep: Sweep, solve_budgets: bool = True) -> list[Run]:
    """All runs of a sweep, in index order.

    Args:
        sweep: the parsed sweep.
        solve_budgets: solve budget matches (needs the backbone's config; a few seconds).
    """
    names = list(sweep.axes)
    runs = []
    for index, combo in enumerate(itertools.product(*(sweep.axes[n] for n in names))):
        values = dict(zip(names, combo, strict=True))
        runs.append(_make_run(sweep, index, values, solve_budgets))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise SweepError("two runs share a directory; give axis values distinct names")
    return runs


def run_id_of(values: dict[str, AxisValue]) -> str:
    """``<task>/<method>/<other axes or default>/<seed or run>``."""
    parts = [values[a].label for a in ("task", "method") if a in values]
    others = [v.label for a, v in values.items() if a not in ("task", "method", "seed")]
    parts.append(",".join(others) if others else "default")
    parts.append(values["seed"].label if "seed" in values else "run")
    return "/".join(parts)


def _make_run(sweep: Sweep, index: int, values: dict[str, AxisValue], solve: bool) -> Run:
    configs: list[str] = []
    for entry in sweep.configs:
        axis = entry[1:-1] if _is_placeholder(entry) else None
        if axis is None:
            configs.append(entry)
        elif axis in values:
            configs += values[axis].configs
    for axis, value in values.items():  # configs of named bundle axes compose last
        if axis not in ("task", "method"):
            configs += value.configs
    overrides: dict[str, Any] = {}
    if sweep.backbone:
        overrides["model.backbone"] = sweep.backbone
    overrides.update(sweep.overrides)
    for value in values.values():
        overrides.update(value.overrides)
    run_id = run_id_of(values)
    run_dir = sweep.output / run_id
    name, _, version = run_id.partition("/")
    run = Run(index=index, run_id=run_id, values=values, configs=configs, overrides=overrides,
              run_dir=run_dir, env=dict(sweep.env))
    target, knob = _budget_target(values)
    if target is not None and solve:
        run.budget = _solve(sweep, run, target, knob)
        for key, value in run.budget["set"].items():
            overrides[f"model.method.init_args.{key}"] = value
    # the logger decides the log dir; the sweep owns it (last, so nothing can move it)
    overrides["trainer.logger.init_args.save_dir"] = str(sweep.output)
    overrides["trainer.logger.init_args.name"] = name
    overrides["trainer.logger.init_args.version"] = version
    return run


def _budget_target(values: dict[str, AxisValue]) -> tuple[Any, str | None]:
    method = values.get("method")
    knob = method.knob if method else None
    if "budget" in values:
        if method is not None and method.match is not None:
            raise SweepError(f"method {method.label!r} has `match:` and the sweep has a budget "
                             "axis; use one of them")
        return values["budget"].match, knob
    return (method.match, knob) if method is not None else (None, None)


def merged_config(configs: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` section the CLI will see (config files in order, then dotted overrides).

    Follows jsonargparse for what matters here: a new ``class_path`` drops earlier
    ``init_args``, later files override earlier keys.
    """
    model: dict[str, Any] = {}
    for path in configs:
        data = yaml.safe_load(Path(path).read_text()) or {}
        section = data.get("model") or {}
        for key, value in section.items():
            if key == "method" and isinstance(value, dict):
                old = model.get("method") or {}
                if value.get("class_path") not in (None, old.get("class_path")):
                    old = {}
                model["method"] = {**old, **value, "init_args": {
                    **(old.get("init_args") or {}), **(value.get("init_args") or {})}}
            else:
                model[key] = value
    method = model.setdefault("method", {"class_path": "methods.Parade", "init_args": {}})
    for key, value in overrides.items():
        if key == "model.method.class_path" or key == "model.method":
            method.clear()
            method.update({"class_path": value, "init_args": {}})
        elif key.startswith("model.method.init_args."):
            method.setdefault("init_args", {})[key.rsplit(".", 1)[-1]] = value
        elif key.startswith("model.") and key.count(".") == 1:
            model[key.split(".", 1)[1]] = value
    return model


def _solve(sweep: Sweep, run: Run, target: Any, knob: str | None) -> dict[str, Any]:
    model = merged_config(run.configs, run.overrides)
    backbone = sweep.count_backbone or model.get("backbone") or "smollm2-135m"
    method = model["method"]
    class_path = str(method.get("class_path"))
    base = dict(method.get("init_args") or {})
    match = budget_module.solve(backbone, class_path, base, target, knob)
    # only what the solution changes becomes an override (the rest stays as configured)
    effective = effective_args(method_class(class_path), base)
    changed = {k: v for k, v in match.init_args.items()
               if k == match.knob or effective.get(k) != v}
    return {**match.to_dict(), "backbone": backbone if isinstance(backbone, str) else "custom",
            "set": {k: _jsonable(v) for k, v in changed.items()}}
