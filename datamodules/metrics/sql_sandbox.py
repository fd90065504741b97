"""The sandbox model-written SQL runs in (WikiSQL execution accuracy, appendix B.7).

A generated query is untrusted code. It runs on a fresh in-memory database (one per
example, so nothing one prediction does can reach another's scoring) that
:func:`lock_down` makes read-only (``PRAGMA query_only`` plus an authorizer that denies
ATTACH, PRAGMA, temporary objects and ``load_extension``), with temporary storage in memory
and these bounds per query: :data:`MAX_SECONDS` of wall clock, :data:`MAX_VM_STEPS` SQLite
instructions, :data:`MAX_HEAP_BYTES` of SQLite heap, :data:`MAX_PAGES` pages per database,
100 kB per value and :data:`MAX_RESULT_ROWS` result rows. A bound that trips raises
:class:`QueryBoundExceeded` (the metric scores it 0 and counts it).
"""

from __future__ import annotations

import _sqlite3
import ctypes
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_VM_STEPS = 10_000_000
"""SQLite VM instructions one query may use; WikiSQL queries need ~1e4, so only runaway
generations (e.g. repeated self-joins) hit it, and they are aborted in well under a second."""
MAX_RESULT_ROWS = 10_000
"""More rows than any WikiSQL table has; bounds the Python-side cost of a runaway cross join."""
MAX_SECONDS = 2.0
"""Wall-clock deadline of one query (checked by the progress handler every 1,000 steps)."""
MAX_HEAP_BYTES = 256 * 2**20
"""SQLite's heap while a generated query runs (``PRAGMA hard_heap_limit``): with
``temp_store = MEMORY`` sorts and temporary b-trees live there too, so a sort over large blobs
fails with "out of memory" instead of writing gigabytes to the temporary folder."""
MAX_PAGES = 4096
"""``max_page_count`` of the main and temp databases (pages of 4 kB: 16 MB each)."""
BOUND_ERROR_CODES = frozenset({7, 9, 13, 18})
"""SQLITE_NOMEM, SQLITE_INTERRUPT (deadline/step budget), SQLITE_FULL, SQLITE_TOOBIG."""
BOUND_EXTRA = "sql_bound_tripped"
"""The metric extra counting predictions stopped by a bound."""
# hard_heap_limit is process-wide: one query at a time sets it and restores it afterwards.
_HEAP_LOCK = threading.Lock()
_PROGRESS_INTERVAL = 1_000  # VM instructions between progress-handler calls
# Caps on a single value and a LIKE pattern: work inside one VM instruction (a huge
# zeroblob, a LIKE with many "%") is out of the progress handler's reach, so it is bounded
# by size instead. WikiSQL cells are far shorter.
_MAX_VALUE_BYTES = 100_000
_MAX_LIKE_PATTERN_BYTES = 1_000

_SELECT_RE = re.compile(r"\s*(select|with)\b", re.IGNORECASE)
# A WITH RECURSIVE is a read too (its runaways are caught by the step budget).
_SQLITE_RECURSIVE: int = getattr(sqlite3, "SQLITE_RECURSIVE", 33)  # 33 in sqlite3.h
_READ_ONLY_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, _SQLITE_RECURSIVE})
# printf('%.*c', 2000000000, 'x') spins for seconds inside one VM instruction (see above)
# and returns nothing; WikiSQL queries never format strings.
_DENIED_FUNCTIONS = frozenset({"printf", "format", "load_extension"})
# Everything a generated query can make the sqlite3 module raise: all of it scores 0.
# (``sqlite3.Warning`` is what Python 3.10 raises for several statements.)
QUERY_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.Error,
    sqlite3.Warning,
    ValueError,
    OverflowError,
    MemoryError,
)


class QueryBoundExceeded(ValueError):
    """A query hit a resource bound (time, VM steps, memory, pages, value size, result rows)."""


def _authorize_read_only(action: int, _arg1: str | None, arg2: str | None, *_: str | None) -> int:
    # Defence in depth beside ``query_only``: nothing but reading and functions (no PRAGMA,
    # ATTACH, which could create files, or temp objects) may even be prepared.
    if action == sqlite3.SQLITE_FUNCTION:
        allowed = (arg2 or "").lower() not in _DENIED_FUNCTIONS
    else:
        allowed = action in _READ_ONLY_ACTIONS
    return sqlite3.SQLITE_OK if allowed else sqlite3.SQLITE_DENY


def lock_down(conn: sqlite3.Connection) -> None:
    """Make a loaded connection read-only and bounded (see the module docstring)."""
    # Temporary b-trees and sorts in memory (bounded by MAX_HEAP_BYTES), never on disk.
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -2048")  # kB
    conn.execute(f"PRAGMA main.max_page_count = {MAX_PAGES}")
    conn.execute(f"PRAGMA temp.max_page_count = {MAX_PAGES}")
    conn.execute("PRAGMA query_only = ON")
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, _MAX_LIKE_PATTERN_BYTES)
    conn.set_authorizer(_authorize_read_only)


def _heap_limit_function() -> Callable[[int], int] | None:
    """``sqlite3_hard_heap_limit64`` of the SQLite library the ``sqlite3`` module uses, or
    ``None`` when it cannot be reached (a statically linked build)."""
    try:  # the extension module's library exports the C API
        function = ctypes.CDLL(_sqlite3.__file__).sqlite3_hard_heap_limit64
    except (OSError, AttributeError):
        return None
    function.restype, function.argtypes = ctypes.c_int64, [ctypes.c_int64]
    return function


_HEAP_LIMIT = _heap_limit_function()


def _set_heap_limit(conn: sqlite3.Connection, limit: int) -> int:
    """Set SQLite's process-wide hard heap limit; returns the previous one (0: none).

    Through the C API the limit can be raised back afterwards. Without it, ``PRAGMA
    hard_heap_limit`` can only lower the limit, so it stays at :data:`MAX_HEAP_BYTES` for the
    rest of the process (still far above what loading a WikiSQL table needs).
    """
    if _HEAP_LIMIT is not None:
        return int(_HEAP_LIMIT(limit))
    conn.set_authorizer(None)  # the PRAGMA is ours; the query's PRAGMAs stay denied
    try:
        previous = int(conn.execute("PRAGMA hard_heap_limit").fetchone()[0])
        conn.execute(f"PRAGMA hard_heap_limit = {int(limit)}")
    finally:
        conn.set_authorizer(_authorize_read_only)
    return previous


def execute_bounded(
    conn: sqlite3.Connection, query: str, max_steps: int, max_seconds: float = MAX_SECONDS
) -> list[tuple[Any, ...]]:
    """Run one SELECT under the step, time and memory bounds.

    Raises :class:`QueryBoundExceeded` when a bound trips, another of ``QUERY_ERRORS`` for any
    other failure.
    """
    if not _SELECT_RE.match(query):
        # Also catches the empty query, which sqlite3 would "run" into an empty result.
        raise ValueError("not a SELECT query")
    calls_left = max(1, max_steps // _PROGRESS_INTERVAL)
    deadline = time.monotonic() + max_seconds

    def out_of_budget() -> bool:
        nonlocal calls_left
        calls_left -= 1
        # a true return makes SQLite abort with SQLITE_INTERRUPT
        return calls_left < 0 or time.monotonic() > deadline

    with _HEAP_LOCK:
        previous = _set_heap_limit(conn, MAX_HEAP_BYTES)
        conn.set_progress_handler(out_of_budget, _PROGRESS_INTERVAL)
        try:
            # ``execute`` refuses several statements; the budget also covers fetching.
            rows = conn.execute(query).fetchmany(MAX_RESULT_ROWS + 1)
        except MemoryError as error:
            raise QueryBoundExceeded(f"out of memory ({MAX_HEAP_BYTES} bytes)") from error
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorcode", None) in BOUND_ERROR_CODES:
                raise QueryBoundExceeded(str(error)) from error
            raise
        finally:
            conn.set_progress_handler(None, 0)
            _set_heap_limit(conn, previous)
    if len(rows) > MAX_RESULT_ROWS:
        raise QueryBoundExceeded(f"query returned more than {MAX_RESULT_ROWS} rows")
    return rows
