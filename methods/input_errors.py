"""The marker of errors caused by the user's input (a file, a row, an option), not by a bug.

Every such error already says what is wrong and what to do, so the ``parade`` command prints
its message alone (``error: …``, exit status 1) instead of a traceback; the Python API raises
it as usual. Concrete errors combine it with the built-in type callers expect, e.g.
``class NotACheckpointError(ValueError, InputError)``.
"""

from __future__ import annotations


class InputError(Exception):
    """Raised for a bad input; the message names the file, row, field or option."""


class NotACheckpointError(ValueError, InputError):
    """An empty, cut or foreign file where a checkpoint or adapter was expected."""


class UnknownBackboneError(OSError, InputError):
    """A backbone name that is no alias, no local path and no reachable hub id."""


class MethodConfigError(ValueError, InputError):
    """A method option that cannot work (rank < 1, capsules not dividing the rank, no targets,
    an unknown role…)."""


class CheckpointNotFoundError(FileNotFoundError, InputError):
    """No file at the checkpoint path given."""
