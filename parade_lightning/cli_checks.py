"""Checks the ``parade`` CLI makes on the raw command line, before jsonargparse parses it.

:func:`method_problem` resolves the ``model.method`` a command line asks for (the last
``--model.method`` / ``--model.method.class_path`` value, else the last ``--config`` file that
sets it) through :func:`methods.registry.method_class`, so an unknown ``class_path`` is reported
with the module file it searched and the copy of ``methods`` that was imported (an editable
install of another checkout shows here), instead of jsonargparse's generic union error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import methods
from methods.registry import method_class

_FLAGS = ("--model.method", "--model.method.class_path")


def _class_path(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("class_path")
    return value if isinstance(value, str) and value else None


def _from_config(path: str) -> str | None:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None  # jsonargparse reports unreadable config files itself
    model = config.get("model") if isinstance(config, dict) else None
    return _class_path(model.get("method")) if isinstance(model, dict) else None


def requested_method(argv: list[str]) -> str | None:
    """The method class path the command line ends up with (None: not set, the default)."""
    found = None
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if flag in _FLAGS:
            try:
                found = _class_path(yaml.safe_load(value)) or found
            except yaml.YAMLError:
                found = value or found
        elif flag in ("-c", "--config") and value:
            found = _from_config(value) or found
    return found


def method_problem(argv: list[str]) -> str | None:
    """The resolver's message when the requested method cannot be found (else None)."""
    path = requested_method(argv)
    if path is None:
        return None
    try:
        method_class(path)
    except ValueError as err:
        home = Path(methods.__file__).parent
        return (f"model.method: {err}. The `methods` package in use is {home}; check that "
                "the class exists there (or that your own module is importable).")
    return None
