"""WikiSQL: natural-language question + table -> executable SQL (execution accuracy).

Appendix C gives the prompt but not the format of ``[table_info]`` or ``[target]``; we use

* ``[table_info]``: ``Columns: <header> (<type>) | ...`` then ``Rows:`` and one line per row,
  cells joined by `` | `` (rows come last, so truncation drops rows first);
* ``[target]``: an executable SQLite query built from the hub's structured ``sql``, e.g.
  ``SELECT COUNT("Player") FROM "table" WHERE "No." = 21 AND "School" = 'Duke'`` (identifiers in
  double quotes, text literals in single quotes, numeric literals bare for ``real`` columns).
  The hub's ``human_readable`` string is not valid SQL (unquoted values), hence this choice.
"""

from __future__ import annotations

from typing import Any

from datamodules.base import TaskDataModule
from datamodules.errors import RowProblem

AGG_OPS: tuple[str, ...] = ("", "MAX", "MIN", "COUNT", "SUM", "AVG")
COND_OPS: tuple[str, ...] = ("=", ">", "<", "OP")
TABLE_NAME = "table"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any, column_type: str) -> str:
    text = str(value).strip()
    if column_type == "real":
        try:
            float(text)
            return text
        except ValueError:
            pass
    return "'" + text.replace("'", "''") + "'"


def wikisql_to_sql(sql: dict[str, Any], table: dict[str, Any]) -> str:
    """Render the hub's structured WikiSQL query as SQLite over a table named ``"table"``.

    Args:
        sql: ``{"sel": int, "agg": int, "conds": {"column_index", "operator_index",
            "condition"}}`` (hub format).
        table: ``{"header": [...], "types": [...], ...}`` (hub format).

    Raises:
        RowProblem: an index is out of range or a field is malformed.
    """
    header = table.get("header")
    if not isinstance(header, list) or not header:
        raise RowProblem("table", "missing or empty 'header'")
    types = list(table.get("types") or ["text"] * len(header))
    try:
        column = _ident(str(header[sql["sel"]]))
        agg = AGG_OPS[sql["agg"]]
        conds = sql.get("conds") or {}
        triples = list(
            zip(
                conds.get("column_index", []),
                conds.get("operator_index", []),
                conds.get("condition", []),
                strict=True,
            )
        )
        where = [
            f"{_ident(str(header[c]))} {COND_OPS[o]} {_literal(v, types[c])}"
            for c, o, v in triples
        ]
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise RowProblem(
            "sql", f"malformed structured query ({type(err).__name__}: {err})"
        ) from err
    select = f"{agg}({column})" if agg else column
    query = f"SELECT {select} FROM {_ident(TABLE_NAME)}"
    return query + (" WHERE " + " AND ".join(where) if where else "")


def table_info(table: dict[str, Any]) -> str:
    """``Columns: ...`` line and one line per table row (see the module docstring)."""
    header = [str(h) for h in table.get("header") or []]
    types = list(table.get("types") or ["text"] * len(header))
    columns = " | ".join(f"{h} ({t})" for h, t in zip(header, types, strict=False))
    rows = ["Rows:"] + [" | ".join(str(c) for c in row) for row in table.get("rows") or []]
    return "\n".join([f"Columns: {columns}", *rows])


class WikiSQL(TaskDataModule):
    """WikiSQL (``Salesforce/wikisql``; fields question, table{header, types, rows}, sql).

    Split (appendix B.5): the published train / validation / test. ``[query]`` is the
    question, ``[table_info]`` the rendered table (shortened from the end, i.e. its last rows, when
    too long), the response an executable SQL query (module docstring); ``targets`` carry the
    hub's structured ``sql`` and ``table`` for execution accuracy.
    """

    task = "wikisql"
    hub_path = "Salesforce/wikisql"
    split_rule = "native"
    template = (
        "Answer the following query by writing a SQL query on the given table:\n"
        "{question}\nTable information:\n{table_info}."
    )
    truncate_field = "table_info"
    response_field = "sql"
    metric = "wikisql_execution"
    max_new_tokens = 64
    paper_batch_size = 128

    def _table(self, row: dict[str, Any]) -> dict[str, Any]:
        table = row.get("table")
        if not isinstance(table, dict):
            raise RowProblem("table", "missing (execution accuracy needs the table)")
        return table

    def prompt_fields(self, row: dict[str, Any]) -> dict[str, str]:
        """The question and the rendered table."""
        info = table_info(self._table(row))
        if not info.strip():
            raise RowProblem("table", "empty table")
        return {"question": self.text(row, "question"), "table_info": info}

    def response(self, row: dict[str, Any]) -> str:
        """Executable SQL built from the structured ``sql``."""
        sql = row.get("sql")
        if not isinstance(sql, dict):
            raise RowProblem("sql", "missing")
        return wikisql_to_sql(sql, self._table(row))

    def targets(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        """``text`` (the SQL), ``sql`` (hub structure) and ``table`` (hub structure)."""
        return {"text": response, "sql": row["sql"], "table": self._table(row)}
