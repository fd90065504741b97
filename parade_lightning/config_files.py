"""``--config`` files are checked as YAML before the CLI parses them, so that a syntax error
names the file and its line (jsonargparse reports only ``"<unicode string>", line N``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml


def config_paths(args: Sequence[str]) -> list[str]:
    """The values of ``--config``/``-c`` in a command line (``--config=x`` too)."""
    paths = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            paths.append(args[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def yaml_problem(path: str | Path) -> str | None:
    """``"<file>, line L, column C: <problem>"`` when the file is not valid YAML, else None
    (a missing file is left to the CLI's own message)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        return f"{path}: not UTF-8 text (byte {err.start})"
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and start is not None and (mark is None or start.line != mark.line):
            context += f" that starts at line {start.line + 1}"
        return f"{path}{where}: invalid YAML: {problem}" + (f" ({context})" if context else "")
    return None
