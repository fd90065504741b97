"""WikiSQL execution accuracy (paper appendices B.5 and B.7).

"A predicted SQL query is correct if and only if it can be executed and obtains the same
results with the ground truth." Each example's table is loaded into a private in-memory
SQLite database, the gold query and the generated one are both run there, and the results
are compared as multisets of rows. Generated SQL is untrusted: it runs read-only under time,
step, memory and page bounds (:mod:`datamodules.metrics.sql_sandbox`); a prediction stopped by a
bound scores 0 and is counted in the ``sql_bound_tripped`` extra.

SQL conventions (shared by the training target and the scorer, so they cannot drift):

* The table is called ``"table"`` (quoted: ``table`` is an SQL keyword). Its Hub name
  (e.g. ``table_10015132_11``) and id (e.g. ``1-10015132-11``) are views of it, so a query
  may use those too.
* Columns are named by the table's real headers, always double-quoted, from
  :func:`wikisql_column_names` (an empty header becomes ``col{i}``, a repeated one gets
  " (2)", " (3)", ...). The prompt's table information should list these same names.
* ``"real"`` columns hold REAL values ("1,000" -> 1000.0; an empty cell is NULL; any other
  text is kept as text rather than lost), ``"text"`` columns hold TEXT. All columns compare
  with ``COLLATE NOCASE``, as the original WikiSQL evaluation lowercases both sides.
  Because a REAL column gives NUMERIC affinity to a quoted literal, ``"No." > '3'`` compares
  numerically.
* :func:`render_wikisql_query` writes the gold query, e.g.
  ``SELECT COUNT("School") FROM "table" WHERE "Position" = 'guard' AND "No." > 3``.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from datamodules.metrics.core import ExampleScore
from datamodules.metrics.sql_sandbox import (
    BOUND_EXTRA,
    MAX_VM_STEPS,
    QUERY_ERRORS,
    QueryBoundExceeded,
    execute_bounded,
    lock_down,
)
from datamodules.metrics.text import first_line

logger = logging.getLogger(__name__)

AGG_OPS: tuple[str, ...] = ("", "MAX", "MIN", "COUNT", "SUM", "AVG")
"""WikiSQL's aggregation operators, indexed by ``sql["agg"]``."""
COND_OPS: tuple[str, ...] = ("=", ">", "<", "OP")
"""WikiSQL's condition operators, indexed by ``operator_index`` ("OP" never occurs)."""
TABLE_NAME = "table"
"""The name every query uses for the example's table."""

_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
# WikiSQL's own fallback for numeric conditions (lib/dbengine.py ``num_re``).
_FIRST_NUMBER_RE = re.compile(r"[-+]?\d*\.\d+|\d+")
_CODE_FENCE_RE = re.compile(r"\s*```[a-zA-Z]*\s*(.*?)\s*(?:```|$)", re.DOTALL)
def quote_identifier(name: str) -> str:
    """Quote an SQL identifier, doubling inner double quotes (``a"b`` becomes ``"a""b"``)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote an SQL string literal, doubling inner single quotes (O'Neil becomes 'O''Neil')."""
    return "'" + value.replace("'", "''") + "'"


def wikisql_column_names(table: Mapping[str, Any]) -> list[str]:
    """The column names queries use: the headers, made non-empty and unique.

    SQLite compares identifiers case-insensitively (ASCII), so "Team" and "TEAM" clash.

    Args:
        table: a WikiSQL table with ``"header"``.

    Returns:
        One name per header, e.g. ``["Player", "No.", "col2", "Player (2)"]``.
    """
    names: list[str] = []
    seen: set[str] = set()
    for index, header in enumerate(table["header"]):
        base = str(header).strip() or f"col{index}"
        name, suffix = base, 2
        while name.lower() in seen:
            name, suffix = f"{base} ({suffix})", suffix + 1
        seen.add(name.lower())
        names.append(name)
    return names


def _real_columns(table: Mapping[str, Any]) -> list[bool]:
    types = table.get("types") or []
    return [i < len(types) and str(types[i]).lower() == "real" for i in range(len(table["header"]))]


def _plain_number(value: Any) -> str | None:
    """``value`` as a bare numeric literal ("1,000" -> "1000") or ``None`` if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr, not "g", which would write 1e+06; integral floats read as the table shows them.
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip().replace(",", "")
    return text.lstrip("+") if _PLAIN_NUMBER_RE.fullmatch(text) else None


def _cell(value: Any, is_real: bool) -> Any:
    """A table cell as stored: numbers in real columns, text otherwise (see module doc)."""
    if value is None or not is_real:
        return value if value is None or isinstance(value, str) else str(value)
    if not str(value).strip():
        return None
    number = _plain_number(value)
    return float(number) if number is not None else str(value)


def _literal(value: Any, is_real: bool) -> str:
    """A condition value as SQL: a number for real columns (as WikiSQL parses it), else text."""
    if is_real:
        number = _plain_number(value)
        if number is None:
            match = _FIRST_NUMBER_RE.search(str(value).replace(",", ""))
            number = match.group().lstrip("+") if match else None
        if number is not None:
            return number
    text = value if isinstance(value, str) else (_plain_number(value) or str(value))
    return quote_literal(text)


def _conditions(sql: Mapping[str, Any]) -> list[tuple[int, int, Any]]:
    """Conditions as ``(column, operator, value)`` from the Hub layout or original triples."""
    conds = sql.get("conds") or []
    if isinstance(conds, Mapping):
        columns, operators = conds["column_index"], conds["operator_index"]
        return list(zip(columns, operators, conds["condition"], strict=True))
    return [(int(col), int(op), value) for col, op, value in conds]


def render_wikisql_query(sql: Mapping[str, Any], table: Mapping[str, Any]) -> str:
    """Render WikiSQL's structured query as the SQL text the model is trained to generate.

    Args:
        sql: the Hub's ``{"sel": int, "agg": int, "conds": {"column_index": [...],
            "operator_index": [...], "condition": [...]}}`` (original ``[[col, op, value]]``
            triples are accepted too).
        table: the Hub's table (``"header"``, ``"types"``, ``"rows"``, ...).

    Returns:
        e.g. ``SELECT COUNT("School") FROM "table" WHERE "Position" = 'guard' AND "No." > 3``.

    Raises:
        ValueError: for an operator WikiSQL never uses ("OP").
    """
    names = wikisql_column_names(table)
    is_real = _real_columns(table)
    column = quote_identifier(names[int(sql["sel"])])
    agg = AGG_OPS[int(sql.get("agg", 0))]
    query = f"SELECT {f'{agg}({column})' if agg else column} FROM {quote_identifier(TABLE_NAME)}"
    clauses = []
    for col, op, value in _conditions(sql):
        if COND_OPS[op] == "OP":
            raise ValueError("WikiSQL condition operator 'OP' has no SQL meaning")
        literal = _literal(value, is_real[col])
        clauses.append(f"{quote_identifier(names[col])} {COND_OPS[op]} {literal}")
    return query + (" WHERE " + " AND ".join(clauses) if clauses else "")


def open_wikisql_database(table: Mapping[str, Any]) -> sqlite3.Connection:
    """Load a table into a fresh, locked-down in-memory SQLite database.

    After loading, the connection is ``PRAGMA query_only`` and an authorizer denies every
    action except reading tables/views and calling functions (bar ``printf``/``format``/
    ``load_extension``): no ATTACH (which could create files), no PRAGMA, no temp objects.
    String/blob values are capped at 100 kB and LIKE patterns at 1 kB; temporary storage is
    in memory (``temp_store = MEMORY``, :data:`MAX_PAGES` pages per database), and each query
    runs under :data:`MAX_SECONDS`, :data:`MAX_VM_STEPS` and :data:`MAX_HEAP_BYTES`.

    Args:
        table: the Hub's table dict.

    Returns:
        The connection; the caller closes it.
    """
    names = wikisql_column_names(table)
    is_real = _real_columns(table)
    conn = sqlite3.connect(":memory:")
    columns = ", ".join(
        f"{quote_identifier(name)} {'REAL' if real else 'TEXT'} COLLATE NOCASE"
        for name, real in zip(names, is_real, strict=True)
    )
    conn.execute(f"CREATE TABLE {quote_identifier(TABLE_NAME)} ({columns})")
    width = len(names)
    rows = [
        [_cell(value, is_real[i]) for i, value in enumerate(list(row)[:width])]
        + [None] * (width - len(row))
        for row in table.get("rows", [])
    ]
    placeholders = ", ".join("?" * width)
    conn.executemany(f"INSERT INTO {quote_identifier(TABLE_NAME)} VALUES ({placeholders})", rows)
    # SQLite names are case-insensitive, hence the lower() keys; "sqlite_*" names are reserved.
    aliases = {str(table[key]).lower(): str(table[key]) for key in ("name", "id") if table.get(key)}
    for lowered, alias in sorted(aliases.items()):
        if lowered != TABLE_NAME and not lowered.startswith("sqlite_"):
            source = quote_identifier(TABLE_NAME)
            conn.execute(f"CREATE VIEW {quote_identifier(alias)} AS SELECT * FROM {source}")
    lock_down(conn)
    return conn


def run_wikisql_query(
    query: str, table: Mapping[str, Any], max_steps: int = MAX_VM_STEPS
) -> list[tuple[Any, ...]]:
    """Execute one SELECT on a table (see :func:`open_wikisql_database`).

    Args:
        query: the SQL text.
        table: the Hub's table dict.
        max_steps: SQLite VM instruction budget.

    Returns:
        The result rows, in SQLite's order.

    Raises:
        sqlite3.Error | sqlite3.Warning | ValueError | OverflowError: the query is not a
            single SELECT, does not parse or run, or exceeds the budget (``QUERY_ERRORS``).
    """
    conn = open_wikisql_database(table)
    try:
        return execute_bounded(conn, query, max_steps)
    finally:
        conn.close()


def _cell_key(value: Any) -> tuple[int, Any]:
    # Numbers compare by value to 10 significant digits, so COUNT's 3 equals a REAL 3.0 and
    # AVG equals SUM/COUNT despite rounding; the rank keeps sorting free of type errors.
    if value is None:
        return (0, 0.0)
    if isinstance(value, int | float):
        return (1, float(f"{value:.10g}"))
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


def canonical_result(rows: Sequence[Sequence[Any]]) -> list[tuple[tuple[int, Any], ...]]:
    """A result as a sorted multiset of rows with normalised numbers (order-insensitive)."""
    return sorted(tuple(_cell_key(value) for value in row) for row in rows)


def clean_predicted_sql(prediction: str) -> str:
    """The SQL in a generation: unfenced (```sql ... ```), first line, no trailing ``;``.

    Training targets are single lines (:func:`render_wikisql_query`), so the first line is
    the query and whatever a model adds after it when it misses EOS is dropped.
    """
    fenced = _CODE_FENCE_RE.match(prediction)
    text = fenced.group(1) if fenced else prediction
    return first_line(text).strip().rstrip(";").rstrip()


def wikisql_execution_example(prediction: str, target: Mapping[str, Any]) -> ExampleScore:
    """1.0 iff the generated SQL runs and returns the gold query's result multiset.

    Never raises for a bad generation (unparseable, not a SELECT, several statements, too
    slow, too big, writes): all of those score 0. Each example gets its own fresh database,
    so nothing one prediction does can reach another's scoring. The extra
    ``sql_bound_tripped`` is 1.0 when the prediction hit a resource bound (its mean over a
    split, logged and written to ``metrics.json``, is the fraction that did).

    Args:
        prediction: the generated response.
        target: needs ``"table"`` and ``"sql"`` (structured gold; without it, ``"text"`` is
            run as the gold SQL).
    """
    table = target["table"]
    gold_sql = render_wikisql_query(target["sql"], table) if "sql" in target else target["text"]
    conn = open_wikisql_database(table)
    try:
        try:
            gold = execute_bounded(conn, gold_sql, MAX_VM_STEPS)
        except QUERY_ERRORS as error:
            logger.warning("WikiSQL gold query failed (%s): %s", error, gold_sql)
            return ExampleScore(0.0, {BOUND_EXTRA: 0.0})
        try:
            predicted = execute_bounded(conn, clean_predicted_sql(prediction), MAX_VM_STEPS)
        except QueryBoundExceeded:
            return ExampleScore(0.0, {BOUND_EXTRA: 1.0})
        except QUERY_ERRORS:
            return ExampleScore(0.0, {BOUND_EXTRA: 0.0})
    finally:
        conn.close()
    correct = canonical_result(predicted) == canonical_result(gold)
    return ExampleScore(float(correct), {BOUND_EXTRA: 0.0})
