"""The one method resolver: a class path or short name -> a :class:`PeftMethod` class.

Every place that turns a name into a method goes through here: the CLI (which checks and
canonicalises ``model.method`` before instantiation), the sweep's budget matcher, adapter
files and checkpoints, and the multi-tenant server. Accepted forms (the same that
jsonargparse accepts in a ``class_path``):

* a dotted path, ``methods.LoRA`` or ``mypkg.adapters.MyMethod`` (imported on demand);
* a short name, ``LoRA`` or ``MyMethod``: any :class:`PeftMethod` subclass already imported
  (the built-ins always are), matched by class name.

See ``docs/design.md`` ("Adding a method").
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from methods.base import PeftMethod
from methods.from_peft import FromPeft
from methods.ia3 import IA3, PaperIA3
from methods.lora import LoRA
from methods.parade import Parade, Parade1, Parade2, Parade3, Parade4

BUILTIN: tuple[type[PeftMethod], ...] = (
    Parade, Parade1, Parade2, Parade3, Parade4, IA3, PaperIA3, LoRA, FromPeft,
)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def known_methods() -> dict[str, type[PeftMethod]]:
    """Short name -> class of every imported method (built-ins first)."""
    known: dict[str, type[PeftMethod]] = {}
    for cls in (*BUILTIN, *_subclasses(PeftMethod)):
        known.setdefault(cls.__name__, cls)
    return known


def _where(module_name: str) -> str:
    """Which file a module name resolves to (or why it does not), for error messages."""
    top = module_name.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return f"no module {top!r} is importable"
    origin = spec.origin or ", ".join(spec.submodule_search_locations or [])
    return f"{top!r} was imported from {origin}"


def method_class(path: str) -> type[PeftMethod]:
    """The class of ``path`` (dotted path or short name); one clear error otherwise."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"a method needs a class_path (e.g. methods.Parade), got {path!r}")
    module_name, _, name = path.rpartition(".")
    if not module_name:
        cls = known_methods().get(name)
        if cls is None:
            raise ValueError(f"unknown method {path!r}; known: {', '.join(known_methods())} "
                             "(or a dotted path to a PeftMethod subclass)")
        return cls
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"method {path!r}: cannot import {module_name!r} ({err}; "
                         f"{_where(module_name)})") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ValueError(f"method {path!r}: {module_name!r} has no {name!r} (searched "
                         f"{getattr(module, '__file__', module_name)})")
    if not (isinstance(cls, type) and issubclass(cls, PeftMethod)):
        raise ValueError(f"{path!r} is not a PeftMethod subclass")
    return cls


def canonical_path(cls: type[PeftMethod]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def method_from_config(config: PeftMethod | dict[str, Any]) -> PeftMethod:
    """Build a method from ``{"class_path": "methods.LoRA", "init_args": {...}}`` (or pass
    one through)."""
    if isinstance(config, PeftMethod):
        return config
    if not isinstance(config, dict):
        raise ValueError(f"a method config is a mapping with class_path, got {config!r}")
    cls = method_class(config.get("class_path"))
    try:
        return cls(**(config.get("init_args") or {}))
    except TypeError as err:
        raise ValueError(f"{cls.__name__}: {err}") from None


def effective_args(cls: type[PeftMethod], init_args: dict[str, Any]) -> dict[str, Any]:
    """``init_args`` completed with the defaults of the method's ``__init__``."""
    params = inspect.signature(cls.__init__).parameters
    defaults = {n: p.default for n, p in params.items()
                if n != "self" and p.default is not inspect.Parameter.empty}
    return {**defaults, **init_args}
