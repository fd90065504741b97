"""Model-written SQL cannot harm the host or another prediction's score (WikiSQL execution).

Each prediction gets a fresh, read-only in-memory database with bounds on time, VM steps,
SQLite heap (temporary storage included) and pages; a tripped bound scores 0 and is counted
in the metric's ``sql_bound_tripped`` extra.
"""

from __future__ import annotations

import sqlite3

import pytest
from test_metrics_wikisql import GOLD_SQL, GOLD_TEXT, TABLE

from datamodules.metrics import open_wikisql_database, score
from datamodules.metrics.sql_execution import run_wikisql_query
from datamodules.metrics.sql_sandbox import MAX_HEAP_BYTES, QueryBoundExceeded, execute_bounded

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
TARGET = {"text": GOLD_TEXT, "sql": GOLD_SQL, "table": TABLE}
# a sort over ~18 GB of random blobs: must fail on the heap bound, not fill the disk
BLOB_SORT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) "
    "SELECT length(b) FROM (SELECT randomblob(90000) AS b FROM c ORDER BY b)"
)


def bound_tripped(sql: str, match: str, max_seconds: float) -> None:
    """``sql`` on a fresh sandboxed connection trips a bound whose message matches."""
    conn = open_wikisql_database(TABLE)
    try:
        with pytest.raises(QueryBoundExceeded, match=match):
            execute_bounded(conn, sql, max_steps=10**12, max_seconds=max_seconds)
    finally:
        conn.close()


def test_blob_sort_trips_the_memory_bound_and_never_spills_to_disk():
    conn = open_wikisql_database(TABLE)
    conn.set_authorizer(None)  # only to read the settings back
    assert conn.execute("PRAGMA temp_store").fetchone() == (2,)  # MEMORY
    assert conn.execute("PRAGMA temp.max_page_count").fetchone()[0] <= 4096
    conn.close()
    # a disk spill would not run out of SQLite heap: the sort stayed in (bounded) memory
    bound_tripped(BLOB_SORT, "out of memory", max_seconds=600)
    with pytest.raises(QueryBoundExceeded):  # with the default bounds: memory or time
        run_wikisql_query(BLOB_SORT, TABLE)
    # the process-wide heap limit is restored after every query
    conn = sqlite3.connect(":memory:")
    assert conn.execute("PRAGMA hard_heap_limit").fetchone()[0] != MAX_HEAP_BYTES
    conn.close()


def test_wall_clock_deadline_stops_a_query():
    endless = ENDLESS
    bound_tripped(endless, "interrupted", max_seconds=0.2)


def test_tripped_bounds_score_zero_and_are_counted_in_extras():
    endless = ENDLESS
    predictions = [GOLD_TEXT, BLOB_SORT, endless, "SELECT nonsense FROM"]
    result = score("wikisql_execution", predictions, [TARGET] * 4)
    assert result.per_example == [1.0, 0.0, 0.0, 0.0]
    assert result.extras == {"sql_bound_tripped": 0.5}  # 2 of 4: the syntax error is no bound


@pytest.mark.parametrize("statement", [
    "ATTACH DATABASE ':memory:' AS other",
    "PRAGMA temp_store = FILE",
    "PRAGMA hard_heap_limit = 0",
    "SELECT load_extension('/tmp/evil.so')",
    "CREATE TEMP TABLE t(x)",
])
def test_the_sandbox_refuses_writes_pragmas_attach_and_extensions(statement):
    conn = open_wikisql_database(TABLE)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not authorized|prohibited"):
            conn.execute(statement)
    finally:
        conn.close()


def test_one_prediction_cannot_affect_the_next():
    hostile = [
        'DELETE FROM "table"', "PRAGMA query_only = OFF", 'DROP VIEW "table_10015132_11"',
        "CREATE TEMP VIEW x AS SELECT 1", BLOB_SORT,
    ]
    result = score("wikisql_execution", [*hostile, GOLD_TEXT], [TARGET] * (len(hostile) + 1))
    assert result.per_example == [0.0] * len(hostile) + [1.0]
