"""WikiSQL: natural-language question + table -> executable SQL (execution accuracy).

Appendix C gives the prompt but not the format of ``[table_info]`` or ``[target]``; we use

* ``[table_info]``: ``Columns: <header> (<type>) | ...`` then ``Rows:`` and one line per row,
  cells joined by `` | `` (rows come last, so truncation drops rows first);
* ``[target]``: an executable SQLite query built from the hub's structured ``sql`` by the
  execution metric's renderer, e.g.
  ``SELECT COUNT("Player") FROM "table" WHERE "No." = 21 AND "School" = 'Duke'`` (column names
  as :func:`~datamodules.metrics.wikisql_column_names` makes them unique and non-empty,
  text literals quoted, numbers bare for ``real`` columns). The hub's ``human_readable``
  string is not valid SQL (unquoted values), hence this choice.
"""

from __future__ import annotations

from typing import Any

from datamodules.errors import RowProblem
from datamodules.metrics import render_wikisql_query, wikisql_column_names
from datamodules.task_datamodule import TaskDataModule


def wikisql_to_sql(sql: dict[str, Any], table: dict[str, Any]) -> str:
    """The training target: the metric's own rendering of the structured query.

    Using :func:`datamodules.metrics.render_wikisql_query` keeps the response the model
    learns identical to the gold query the execution metric runs (same column names, same
    numeric parsing of ``real`` columns).

    Raises:
        RowProblem: an index is out of range or a field is malformed.
    """
    if not isinstance(table.get("header"), list) or not table["header"]:
        raise RowProblem("table", "missing or empty 'header'")
    try:
        return render_wikisql_query(sql, table)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise RowProblem(
            "sql", f"malformed structured query ({type(err).__name__}: {err})"
        ) from err


def table_info(table: dict[str, Any]) -> str:
    """``Columns: ...`` line and one line per table row (see the module docstring)."""
    header = wikisql_column_names(table) if table.get("header") else []
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
        return {"question": self.text(row, "question"), "table_info": table_info(self._table(row))}

    def response(self, row: dict[str, Any]) -> str:
        """Executable SQL built from the structured ``sql``."""
        sql = row.get("sql")
        if not isinstance(sql, dict):
            raise RowProblem("sql", "missing")
        return wikisql_to_sql(sql, self._table(row))

    def targets(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        """``text`` (the SQL), ``sql`` (hub structure) and ``table`` (hub structure)."""
        return {"text": response, "sql": row["sql"], "table": self._table(row)}
