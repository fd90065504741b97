"""Tests for the generation metrics (paper appendix B.7); every expected value is hand-checked."""

from __future__ import annotations

import re
import sqlite3
import string
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torchmetrics.text import ROUGEScore, SQuAD

from parade_lightning.metrics import (
    METRICS,
    TASK_METRICS,
    GenerationMetric,
    canonical_result,
    clean_predicted_sql,
    extract_gsm8k_number,
    higher_is_better,
    normalize_answer,
    normalize_squad_answer,
    open_wikisql_database,
    render_wikisql_query,
    run_wikisql_query,
    score,
    wikisql_column_names,
)

# --------------------------------------------------------------------------- registry


def test_registry_names_directions_and_tasks() -> None:
    assert set(METRICS) == {"accuracy", "f1_em", "rouge_l", "gsm8k_accuracy", "wikisql_execution"}
    assert all(higher_is_better(name) for name in METRICS)
    assert TASK_METRICS == {
        "sst2": "accuracy",
        "rte": "accuracy",
        "qnli": "accuracy",
        "boolq": "accuracy",
        "copa": "accuracy",
        "squad": "f1_em",
        "record": "f1_em",
        "e2e": "rouge_l",
        "gsm8k": "gsm8k_accuracy",
        "wikisql": "wikisql_execution",
    }


def test_score_rejects_bad_calls() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        score("bleu", ["a"], [{"text": "a"}])
    with pytest.raises(ValueError, match="1 predictions but 2 targets"):
        score("accuracy", ["a"], [{"text": "a"}, {"text": "b"}])
    with pytest.raises(ValueError, match="no examples"):
        score("accuracy", [], [])


def test_malformed_target_is_loud() -> None:
    with pytest.raises(KeyError):
        score("accuracy", ["yes"], [{"label": 1}])
    with pytest.raises(ValueError, match="no gold answers"):
        score("f1_em", ["x"], [{"text": "x", "answers": []}])


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Entailment.", "entailment"),
        ("  not_entailment ", "not entailment"),
        ("Not  entailment!", "not entailment"),
        ("positive\n\nsentence: it was bad", "positive"),
        ("\n negative", "negative"),
        ("1.", "1"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def _label(word: str) -> dict[str, Any]:
    return {"text": word, "label_word": word}


def test_accuracy_exact_after_normalising() -> None:
    predictions = [
        "Entailment.",  # right
        "not entailment",  # wrong: must not count as "entailment"
        "entailment",  # wrong: must not count as "not entailment"
        "Not entailment\nsentence 1: ...",  # right, run-on cut at the line break
        "",  # empty
        "2",  # COPA, wrong choice
        "1.",  # COPA, right
        "The answer is yes",  # not the label word itself
    ]
    targets = [
        _label("entailment"),
        _label("entailment"),
        _label("not_entailment"),
        _label("not entailment"),
        _label("positive"),
        _label("1"),
        _label("1"),
        _label("yes"),
    ]
    result = score("accuracy", predictions, targets)
    assert result.per_example == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert result.value == pytest.approx(3 / 8)
    assert result.extras == {}
    assert result.num_examples == 8


def test_accuracy_falls_back_to_text() -> None:
    assert score("accuracy", ["Negative"], [{"text": "negative"}]).value == 1.0


# --------------------------------------------------------------------------- f1_em

# The official SQuAD v1.1 evaluation script (evaluate-v1.1.py), verbatim but for names, as
# the reference the implementation must equal.


def _official_normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction: str, ground_truth: str) -> float:
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _official_em(prediction: str, ground_truth: str) -> bool:
    return _official_normalize_answer(prediction) == _official_normalize_answer(ground_truth)


SQUAD_CASES: list[tuple[str, list[str]]] = [
    ("The Denver Broncos", ["Denver Broncos"]),
    ("Denver Broncos team", ["Denver Broncos"]),
    ("Carolina Panthers", ["Denver Broncos", "Carolina Panthers", "the Panthers"]),
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara, California"]),
    ("an apple a day", ["apple day"]),
    ("Levis Stadium", ["Levi's Stadium"]),
    ("1876-1901", ["1876–1901", "from 1876 to 1901"]),
    ("the the the", ["the"]),
    ("gold", ["golden anniversary"]),
    ("", ["Denver Broncos"]),
    ("wrong answer", ["Denver Broncos"]),
]


def test_normalize_squad_answer_is_official() -> None:
    assert normalize_squad_answer("The  Denver Broncos!") == "denver broncos"
    # Punctuation is deleted, not spaced, before articles go: the official order.
    assert normalize_squad_answer("Levi's the-Stadium") == "levis thestadium"
    for prediction, answers in SQUAD_CASES:
        for text in [prediction, *answers]:
            assert normalize_squad_answer(text) == _official_normalize_answer(text)


def test_f1_em_hand_values() -> None:
    targets = [{"text": a[0], "answers": a} for _, a in SQUAD_CASES[:3]]
    result = score("f1_em", [p for p, _ in SQUAD_CASES[:3]], targets)
    # "Denver Broncos team" vs "Denver Broncos": P = 2/3, R = 1, F1 = 0.8, EM = 0.
    assert result.per_example == pytest.approx([1.0, 0.4, 1.0])
    assert result.extras == pytest.approx({"f1": (1 + 0.8 + 1) / 3, "em": 2 / 3})
    assert result.value == pytest.approx((result.extras["f1"] + result.extras["em"]) / 2)


def test_f1_em_equals_official_script_and_torchmetrics() -> None:
    predictions = [p for p, _ in SQUAD_CASES]
    targets = [{"text": a[0], "answers": a} for _, a in SQUAD_CASES]
    result = score("f1_em", predictions, targets)
    for (prediction, answers), value in zip(SQUAD_CASES, result.per_example, strict=True):
        f1 = max(_official_f1(prediction, a) for a in answers)
        em = max(float(_official_em(prediction, a)) for a in answers)
        assert value == (f1 + em) / 2  # exact, both in float64
    # torchmetrics agrees except where an answer normalises to nothing ("the the the"): it
    # follows SQuAD v2.0 there (F1 = 1 if both are empty), v1.1 gives 0. Hence our own code.
    assert result.per_example[SQUAD_CASES.index(("the the the", ["the"]))] == 0.5
    kept = [i for i, (p, _) in enumerate(SQUAD_CASES) if normalize_squad_answer(p)]
    squad = SQuAD()(
        [{"prediction_text": SQUAD_CASES[i][0], "id": str(i)} for i in kept],
        [{"answers": {"text": SQUAD_CASES[i][1], "answer_start": [0]}, "id": str(i)} for i in kept],
    )
    kept_result = score("f1_em", [predictions[i] for i in kept], [targets[i] for i in kept])
    assert kept_result.extras["f1"] * 100 == pytest.approx(float(squad["f1"]), abs=1e-4)
    assert kept_result.extras["em"] * 100 == pytest.approx(float(squad["exact_match"]), abs=1e-4)


def test_f1_em_accepts_hub_answers_layout_and_cuts_run_on() -> None:
    target = {
        "text": "Denver Broncos",
        "answers": {"text": ["Denver Broncos"], "answer_start": [1]},
    }
    result = score("f1_em", ["Denver Broncos\nQuestion: who lost?"], [target])
    assert result.per_example == [1.0]


# --------------------------------------------------------------------------- rouge_l


def test_rouge_l_hand_computed_lcs() -> None:
    # LCS("the cat was found under the bed", "the cat was under the bed") = 6 tokens:
    # P = 6/7, R = 6/6, F = 2PR / (P + R) = 12/13.
    one = score(
        "rouge_l", ["The cat was found under the bed."], [_refs("the cat was under the bed")]
    )
    assert one.value == pytest.approx(12 / 13, abs=1e-6)
    assert one.extras == pytest.approx(
        {"rouge_l_precision": 6 / 7, "rouge_l_recall": 1.0}, abs=1e-6
    )
    # Lin (2004): "police killed the gunman" vs "police kill the gunman" has LCS 3 (F = 3/4),
    # vs "the gunman kill police" LCS 2 (F = 1/2); with both references the best counts.
    two = score(
        "rouge_l",
        ["police killed the gunman", "police killed the gunman"],
        [
            _refs("the gunman kill police"),
            _refs("the gunman kill police", "police kill the gunman"),
        ],
    )
    assert two.per_example == pytest.approx([0.5, 0.75], abs=1e-6)


def _refs(*references: str) -> dict[str, Any]:
    return {"text": references[0], "references": list(references)}


def test_rouge_l_tokenisation_is_rouge_scores_default() -> None:
    # Lowercase; anything outside [a-z0-9] splits ("Café" -> "caf", "5-star" -> "5 star");
    # no stemming ("prices" != "price").
    result = score(
        "rouge_l",
        ["CAF\u00c9 Adriatic: 5-star!", "prices"],
        [_refs("caf adriatic 5 star"), _refs("price")],
    )
    assert result.per_example == pytest.approx([1.0, 0.0])


def test_rouge_l_matches_torchmetrics_corpus_score() -> None:
    predictions = ["The Vaults is a pub near Cafe Adriatic.", "Aromi is an English place.", ""]
    refs = [
        ["The Vaults pub near Café Adriatic has a 5 star rating.", "The Vaults is a pub."],
        ["Aromi is an English restaurant in the city centre."],
        ["Anything at all."],
    ]
    result = score("rouge_l", predictions, [_refs(*r) for r in refs])
    expected = ROUGEScore(rouge_keys="rougeL", accumulate="best")(predictions, refs)
    assert result.value == pytest.approx(float(expected["rougeL_fmeasure"]), abs=1e-6)
    assert result.per_example[2] == 0.0  # empty prediction


# --------------------------------------------------------------------------- gsm8k


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She sells 1 and 2 = <<1+2=3>>3\n#### 1,000", "1000"),
        ("The answer is $18.", "18"),
        ("She has 5 apples and eats 2, so she has 7", "7"),
        ("#### 72\n\nQuestion: what is 3 + 4?", "72"),
        ("so the total is 40.\n#### -3", "-3"),
        ("#### 5 then 7", "5"),
        ("The answer is 42.\n####", "42"),
        ("It costs -$5 and 1,250.50 dollars", "1250.50"),
        ("Pages 3-5", "5"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_gsm8k_number(text: str, expected: str | None) -> None:
    assert extract_gsm8k_number(text) == expected


def test_gsm8k_accuracy() -> None:
    predictions = ["... #### 72.0", "We get 1000.", "#### 71", "", "I do not know", "$18.\n"]
    targets = [
        {"text": "#### 72", "answer_number": "72"},
        {"text": "#### 1,000", "answer_number": "1,000"},
        {"text": "#### 72", "answer_number": "72"},
        {"text": "#### 72", "answer_number": "72"},
        {"text": "#### 72", "answer_number": "72"},
        {"text": "Janet makes 9 * 2 = $<<9*2=18>>18.\n#### 18"},  # gold from the text
    ]
    result = score("gsm8k_accuracy", predictions, targets)
    assert result.per_example == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert result.value == pytest.approx(0.5)


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


# --------------------------------------------------------------------------- all metrics

_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "accuracy": ("positive", _label("positive")),
    "f1_em": ("Denver Broncos", {"text": "Denver Broncos", "answers": ["Denver Broncos"]}),
    "rouge_l": ("the cat sat", _refs("the cat sat")),
    "gsm8k_accuracy": ("#### 7", {"text": "#### 7", "answer_number": "7"}),
    "wikisql_execution": (GOLD_TEXT, {"text": GOLD_TEXT, "sql": GOLD_SQL, "table": TABLE}),
}


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_every_metric_scores_right_wrong_and_empty(metric: str) -> None:
    right, target = _EXAMPLES[metric]
    wrong = "zebra 12345 SELECT nothing"
    result = score(metric, [right, wrong, ""], [target] * 3)
    assert result.per_example == pytest.approx([1.0, 0.0, 0.0])
    assert result.value == pytest.approx(1 / 3)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_generation_metric_accumulates_like_score(metric: str) -> None:
    right, target = _EXAMPLES[metric]
    predictions = [right, "", right, "zebra"]
    expected = score(metric, predictions, [target] * 4)
    streaming = GenerationMetric(metric)
    streaming.update(predictions[:1], [target])
    streaming.update(predictions[1:], [target] * 3)
    computed = streaming.compute()
    assert float(computed[metric]) == pytest.approx(expected.value)
    for key, value in expected.extras.items():
        assert float(computed[key]) == pytest.approx(value)
    assert computed[metric].dtype == torch.float64
    streaming.reset()
    streaming.update([right], [target])
    assert float(streaming.compute()[metric]) == pytest.approx(1.0)
