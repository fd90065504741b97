"""WikiSQL execution accuracy: SQL rendering, tables, equivalence and the sandbox limits."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from datamodules.metrics import (
    canonical_result,
    clean_predicted_sql,
    open_wikisql_database,
    render_wikisql_query,
    run_wikisql_query,
    score,
    wikisql_column_names,
)

# --------------------------------------------------------------------------- wikisql

TABLE: dict[str, Any] = {
    "id": "1-10015132-11",
    "name": "table_10015132_11",
    "header": ["Player", "Number", "Position", "School", "Notes"],
    "types": ["text", "real", "text", "text", "text"],
    "rows": [
        ["Aleksandar Radojević", "25", "Center", "Barton CC (KS)", ""],
        ["Shawn Respert", "31", "Guard", "Michigan State", "O'Neil"],
        ["Quentin Richardson", "10", "guard", "DePaul", ""],
        ["Alvin Robertson", "7, 21", "Shooting guard", "Arkansas", ""],
        ["Carlos Rogers", "3", "Forward-Center", "Arkansas", ""],
        ["Roy Rogers", "", "Forward", "Alabama", ""],
    ],
}
# SELECT COUNT(School) WHERE Position = guard AND Number > 3  (Hub layout)
GOLD_SQL: dict[str, Any] = {
    "sel": 3,
    "agg": 3,
    "conds": {"column_index": [2, 1], "operator_index": [0, 1], "condition": ["guard", "3"]},
}
GOLD_TEXT = 'SELECT COUNT("School") FROM "table" WHERE "Position" = \'guard\' AND "Number" > 3'


def _wikisql(predictions: list[str], sql: dict[str, Any] = GOLD_SQL) -> list[float]:
    target = {"text": render_wikisql_query(sql, TABLE), "sql": sql, "table": TABLE}
    return score("wikisql_execution", predictions, [target] * len(predictions)).per_example


def test_render_wikisql_query() -> None:
    assert render_wikisql_query(GOLD_SQL, TABLE) == GOLD_TEXT
    # Original WikiSQL triples, no aggregation, quote escaping, no conditions.
    assert (
        render_wikisql_query({"sel": 0, "agg": 0, "conds": [[4, 0, "O'Neil"]]}, TABLE)
        == 'SELECT "Player" FROM "table" WHERE "Notes" = \'O\'\'Neil\''
    )
    assert render_wikisql_query({"sel": 1, "agg": 1, "conds": []}, TABLE) == (
        'SELECT MAX("Number") FROM "table"'
    )
    # Real columns take numbers as WikiSQL parses them; text columns keep text.
    real = {"column_index": [1, 1, 0], "operator_index": [2, 0, 0]}
    sql = {"sel": 0, "agg": 0, "conds": {**real, "condition": ["1,000", "2.5 million", "1998"]}}
    assert render_wikisql_query(sql, TABLE).endswith(
        'WHERE "Number" < 1000 AND "Number" = 2.5 AND "Player" = \'1998\''
    )


def test_column_names_are_unique_and_non_empty() -> None:
    table = {"header": ["Team", "", 'Say "hi"', "TEAM", "Team"], "types": [], "rows": []}
    names = wikisql_column_names(table)
    assert names == ["Team", "col1", 'Say "hi"', "TEAM (2)", "Team (3)"]
    sql = {"sel": 2, "agg": 0, "conds": [[3, 0, "x"]]}
    query = render_wikisql_query(sql, table)
    assert query == 'SELECT "Say ""hi""" FROM "table" WHERE "TEAM (2)" = \'x\''
    assert run_wikisql_query(query, table) == []


def test_wikisql_table_loading_and_types() -> None:
    assert run_wikisql_query('SELECT "Number" FROM "table"', TABLE) == [
        (25.0,),
        (31.0,),
        (10.0,),
        ("7, 21",),  # not a number: kept as text rather than lost
        (3.0,),
        (None,),  # empty real cell: NULL
    ]
    # Text comparisons ignore case, as WikiSQL's evaluation lowercases both sides.
    assert run_wikisql_query(GOLD_TEXT, TABLE) == [(2,)]
    # SQLite orders text after every number, so the text cell passes a numeric ">". Gold
    # and generated queries run on the same data, so this never makes a right query wrong.
    assert run_wikisql_query('SELECT "Player" FROM "table" WHERE "Number" > 100', TABLE) == [
        ("Alvin Robertson",)
    ]


def test_wikisql_gold_scores_one() -> None:
    assert _wikisql([GOLD_TEXT]) == [1.0]


@pytest.mark.parametrize(
    "prediction",
    [
        # keyword case and whitespace
        'select   count("School")\tfrom "table"  where "Position"=\'guard\' and "Number">3',
        # COUNT(*) equals COUNT(col) here (School has no NULLs)
        'SELECT COUNT(*) FROM "table" WHERE "Position" = \'guard\' AND "Number" > 3',
        # a quoted number on a real column compares numerically ('10' < '3' as text)
        'SELECT COUNT("School") FROM "table" WHERE "Number" > \'3\' AND "Position" = \'Guard\'',
        # the Hub table name and id, trailing semicolon, value case
        "SELECT COUNT(School) FROM table_10015132_11 WHERE Position = 'GUARD' AND Number > 3;",
        'SELECT COUNT("School") FROM "1-10015132-11" WHERE "Position" = \'guard\' AND "Number" > 3',
        # a fenced answer, and run-on text after the query
        f"```sql\n{GOLD_TEXT}\n```",
        f"{GOLD_TEXT}\n\nAnswer the following query by writing a SQL query",
    ],
)
def test_wikisql_equivalent_sql_scores_one(prediction: str) -> None:
    assert _wikisql([prediction]) == [1.0]


def test_wikisql_result_is_an_order_free_multiset() -> None:
    sql = {"sel": 0, "agg": 0, "conds": {**GOLD_SQL["conds"]}}
    gold_rows = run_wikisql_query(render_wikisql_query(sql, TABLE), TABLE)
    assert len(gold_rows) == 2
    reordered = (
        'SELECT "Player" FROM "table" WHERE "Number" > 3 AND "Position" = \'guard\' '
        'ORDER BY "Player" DESC'
    )
    doubled = f'{reordered.split(" ORDER")[0]} UNION ALL SELECT "Player" FROM "table" LIMIT 3'
    assert _wikisql([reordered, doubled], sql) == [1.0, 0.0]
    assert canonical_result([(3,), (1.0,)]) == canonical_result([(1,), (3.0,)])
    assert canonical_result([(1,), (1,)]) != canonical_result([(1,)])
    assert canonical_result([(None,), ("a",), (2,)]) == canonical_result([(2.0,), (None,), ("a",)])


@pytest.mark.parametrize(
    "prediction",
    [
        'SELECT COUNT("School") FROM "table" WHERE "Position" = \'forward\'',  # wrong
        'SELECT COUNT("Player") FROM "table"',  # wrong (6, not 2)
        "",  # empty
        "   \n",  # blank
        "SELECT COUNT( FROM WHERE",  # malformed
        'SELECT COUNT("Nope") FROM "missing_table"',  # unknown table
        "2",  # not SQL
        'DROP TABLE "table"',
        'DELETE FROM "table"',
        'INSERT INTO "table" VALUES (1, 2, 3, 4, 5)',
        "PRAGMA query_only = OFF",
        f'{GOLD_TEXT}; DROP TABLE "table"',  # several statements
        "SELECT printf('%.*c', 2000000000, 'x')",  # would allocate 2 GB
    ],
)
def test_wikisql_bad_prediction_scores_zero(
    prediction: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert _wikisql([prediction]) == [0.0]
    assert not caplog.records  # the gold query ran: the 0 is the prediction's own


def test_wikisql_attach_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    assert _wikisql([f"ATTACH DATABASE '{path}' AS x"]) == [0.0]
    assert not path.exists()


def test_wikisql_runaway_query_is_stopped_quickly() -> None:
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    )
    cross_join = "SELECT * FROM " + ", ".join(f'"table" t{i}' for i in range(8))  # 6**8 rows
    start = time.perf_counter()
    assert _wikisql([endless, cross_join]) == [0.0, 0.0]
    assert time.perf_counter() - start < 3.0


def test_wikisql_database_is_read_only() -> None:
    conn = open_wikisql_database(TABLE)
    try:
        for statement in [
            'DELETE FROM "table"',
            "CREATE TEMP TABLE t (x)",
            "PRAGMA query_only = 0",
        ]:
            with pytest.raises(sqlite3.DatabaseError):
                conn.execute(statement)
        assert conn.execute('SELECT COUNT(*) FROM "table"').fetchone() == (6,)
    finally:
        conn.close()


def test_wikisql_gold_from_text_and_clean_sql() -> None:
    target = {"text": GOLD_TEXT, "table": TABLE}
    assert score("wikisql_execution", [GOLD_TEXT], [target]).value == 1.0
    assert clean_predicted_sql("```SQL\nSELECT 1;\n```") == "SELECT 1"
    assert clean_predicted_sql("\n SELECT 1 ;  \nmore") == "SELECT 1"


