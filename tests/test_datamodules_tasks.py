"""Per-task unit tests: appendix C templates, verbalisers, targets and task-specific rules."""

from __future__ import annotations

import pytest
from datamodule_fixtures import decode, llama2, make_dm, write_jsonl

import datamodules as D
from datamodules.generation_tasks import gsm8k_answer_number
from datamodules.metrics import score
from datamodules.wikisql import wikisql_to_sql

NLI = "Are sentence 1 and sentence 2 have entailment relation or not?"
TABLE = {
    "header": ["Player", "No.", "School"],
    "types": ["text", "real", "text"],
    "rows": [["Ann", "21", "Duke"], ["Bo", "3", "Yale"]],
    "id": "1-1", "name": "table_1", "page_title": "", "page_id": "", "section_title": "",
    "caption": "",
}
SQL = {
    "human_readable": "SELECT COUNT Player FROM table WHERE No. = 21 AND School = Duke",
    "sel": 0, "agg": 3,
    "conds": {"column_index": [1, 2], "operator_index": [0, 0], "condition": ["21", "Duke"]},
}
SQUAD = {"context": "Paris is in France.", "question": "Where is Paris?", "id": "x",
         "title": "t", "answers": {"text": ["France", "in France"], "answer_start": [12, 9]}}
CASES = [  # (class, source split, row, stage, split, query, response, targets subset)
    (D.SST2, "validation", {"sentence": "a gem ", "label": 1, "idx": 0}, "test", "test",
     "a gem\nThe sentiment of the given sentence is:", "positive", {"label_word": "positive"}),
    (D.RTE, "validation", {"sentence1": "A b.", "sentence2": "C d.", "label": 0, "idx": 0},
     "test", "test", f"sentence 1: A b.\nsentence 2: C d.\n{NLI}", "entailment",
     {"label_word": "entailment"}),
    (D.QNLI, "validation", {"question": "Who?", "sentence": "Me.", "label": 1, "idx": 0},
     "test", "test", f"sentence 1: Who?\nsentence 2: Me.\n{NLI}", "not entailment",
     {"label_word": "not entailment"}),
    (D.BoolQ, "validation", {"question": "is it", "passage": "It is.", "label": 0, "idx": 0},
     "test", "test", "Reference document:\nIt is.\nQuestion:\nis it", "no",
     {"label_word": "no"}),
    (D.COPA, "validation", {"premise": "I ran.", "choice1": "Late.", "choice2": "Fit.",
                            "question": "cause", "label": 1, "idx": 0},
     "test", "test", "Premise:\nI ran.\nChoice 1: Late.\nChoice 2: Fit.\nQuestion:\ncause", "2",
     {"label_word": "2"}),
    (D.ReCoRD, "validation", {"passage": "Bob met Al.\n@highlight\nmet",
                              "query": "@placeholder met Al.", "entities": ["Bob", "Al"],
                              "answers": ["Bob", "Bob "], "idx": {"passage": 0, "query": 0}},
     "test", "test", "Context:\nBob met Al.\n@highlight\nmet\nQuestion:\n@placeholder met Al.",
     "Bob", {"answers": ["Bob", "Bob"]}),
    (D.SQuAD, "validation", SQUAD, "test", "test",
     "Context:\nParis is in France.\nQuestion:\nWhere is Paris?", "France",
     {"answers": ["France", "in France"]}),
    (D.E2E, "test", {"meaning_representation": "name[X], food[Thai]",
                     "human_reference": "X serves Thai."},
     "test", "test",
     "Reference:\nname[X], food[Thai]\nGenerate a customer review following the given reference.",
     "X serves Thai.", {"references": ["X serves Thai.", "X serves Thai."]}),
    (D.GSM8K, "test", {"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}, "test", "test",
     "Answer the following math quesition:\n1+1?\nInstruction: please think step by step.",
     "1+1=<<1+1=2>>2\n#### 2", {"answer_number": "2"}),
    (D.WikiSQL, "test", {"phase": 1, "question": "How many?", "table": TABLE, "sql": SQL},
     "test", "test",
     "Answer the following query by writing a SQL query on the given table:\nHow many?\n"
     "Table information:\nColumns: Player (text) | No. (real) | School (text)\nRows:\n"
     "Ann | 21 | Duke\nBo | 3 | Yale.",
     "SELECT COUNT(\"Player\") FROM \"table\" WHERE \"No.\" = 21 AND \"School\" = 'Duke'",
     {"sql": SQL, "table": TABLE}),
    (D.Alpaca, "train", {"instruction": "Add.", "input": "1, 2", "output": "3"}, "fit", "dev",
     "Add.\n1, 2", "3", {}),
]


pytestmark = pytest.mark.usefixtures("offline_data")


@pytest.mark.parametrize("case", CASES, ids=[c[0].task for c in CASES])
def test_template_response_targets(tmp_path, tok, case):
    cls, source, row, stage, split, query, response, targets = case
    write_jsonl(tmp_path, cls.task, source, [row, row])
    dm = make_dm(cls, tmp_path, tok)
    dm.setup(stage)
    ex = dm.split_examples(split)[0]
    assert decode(tok, ex["prompt_ids"]) == llama2(query)
    assert decode(tok, ex["response_ids"]) == response + "</s>"
    assert ex["targets"]["text"] == response
    assert targets.items() <= ex["targets"].items()
    batch = next(iter(dm.test_dataloader() if split == "test" else dm.val_dataloader()))
    assert batch["targets"][0] == ex["targets"]


def test_task_attributes():
    assert set(D.TASKS) == {"sst2", "rte", "qnli", "boolq", "copa", "record", "squad", "e2e",
                            "gsm8k", "wikisql", "alpaca", "mt_bench"}
    assert D.get_task("rte") is D.RTE
    assert D.RTE.label_words == D.QNLI.label_words == ("entailment", "not entailment")
    assert D.SST2.label_words == ("negative", "positive") and D.BoolQ.label_words == ("no", "yes")
    assert D.COPA.label_words == ("1", "2")
    metrics = {t: c.metric for t, c in D.TASKS.items()}
    assert metrics == {"sst2": "accuracy", "rte": "accuracy", "qnli": "accuracy",
                       "boolq": "accuracy", "copa": "accuracy", "record": "f1_em",
                       "squad": "f1_em", "e2e": "rouge_l", "gsm8k": "gsm8k_accuracy",
                       "wikisql": "wikisql_execution", "alpaca": None, "mt_bench": None}
    assert D.SST2.max_new_tokens <= 8 and D.SQuAD.max_new_tokens == 32
    assert D.GSM8K.max_new_tokens == 256 and D.Alpaca.max_new_tokens == 256
    assert D.RTE(max_new_tokens=3).max_new_tokens == 3


def test_bad_rows_named_then_skipped(tmp_path, tok):
    good = {"sentence1": "a.", "sentence2": "b.", "label": 0, "idx": 0}
    rows = [good, good, {**good, "sentence2": None}, good, {**good, "sentence1": "  "},
            {**good, "label": 7}, {k: v for k, v in good.items() if k != "label"}]
    write_jsonl(tmp_path, "rte", "train", rows)
    write_jsonl(tmp_path, "rte", "validation", [good, good])
    with pytest.raises(D.BadRowError) as err:
        make_dm(D.RTE, tmp_path, tok).setup("fit")
    assert (err.value.task, err.value.split, err.value.row, err.value.field) == (
        "rte", "train", 2, "sentence2")
    assert "rte" in str(err.value) and "row 2" in str(err.value) and "'train'" in str(err.value)
    dm = make_dm(D.RTE, tmp_path, tok, on_bad_row="skip")
    with pytest.warns(UserWarning, match="dropped 4"):
        dm.setup("fit")
    stats = dm.stats["train"]
    assert stats["dropped"] == 4 and stats["examples"] == 3
    assert stats["dropped_by_field"] == {"sentence2": 1, "sentence1": 1, "label": 2}
    assert [ex["index"] for ex in dm.split_examples("train")] == [0, 1, 2]
    assert [ex["row"] for ex in dm.split_examples("train")] == [0, 1, 3]


def test_bad_label_message(tmp_path, tok):
    write_jsonl(tmp_path, "sst2", "validation", [{"sentence": "x", "label": -1, "idx": 0}])
    with pytest.raises(D.BadRowError, match=r"sst2.*'test'.*row 0.*'label'.*verbaliser"):
        make_dm(D.SST2, tmp_path, tok).setup("test")


def test_e2e_groups_eval_by_mr(tmp_path, tok):
    rows = [{"meaning_representation": mr, "human_reference": ref}
            for mr, ref in [("m1", "r1"), ("m1", "r2"), ("m2", "r3"), ("m1", "r4")]]
    for source in ("train", "validation"):
        write_jsonl(tmp_path, "e2e", source, rows)
    dm = make_dm(D.E2E, tmp_path, tok)
    dm.setup("fit")
    assert len(dm.split_examples("train")) == 4
    dev = dm.split_examples("dev")
    assert [ex["targets"]["references"] for ex in dev] == [["r1", "r2", "r4"], ["r3"]]
    assert [ex["targets"]["text"] for ex in dev] == ["r1", "r3"]
    assert dm.stats["dev"]["split_rows"] == 2


E2E_ROWS = [("name[Aromi], food[Thai]", "Aromi serves Thai food."),
            ("name[Aromi], food[Thai]", "Thai food is served at Aromi."),
            ("name[Bibi], area[riverside]", "Bibi is by the riverside."),
            ("name[Aromi], food[Thai]", "You can get Thai food at the Aromi restaurant.")]


def test_e2e_protocols_score_the_same_predictions_differently(tmp_path, tok):
    """per_mr: one example per MR, best of its references; per_row: one per test row, its own
    reference only (appendix B.3's 4,693 rows). The option is in the cache key."""
    rows = [{"meaning_representation": mr, "human_reference": ref} for mr, ref in E2E_ROWS]
    write_jsonl(tmp_path, "e2e", "test", rows)
    said = {"name[Aromi], food[Thai]": "Thai food is served at Aromi.",
            "name[Bibi], area[riverside]": "Bibi is by the riverside."}  # one output per MR
    results = {}
    for protocol in ("per_mr", "per_row"):
        dm = make_dm(D.E2E, tmp_path, tok, e2e_protocol=protocol)
        dm.setup("test")
        examples = dm.split_examples("test")
        predictions = [said[rows[ex["row"]]["meaning_representation"]] for ex in examples]
        results[protocol] = (len(examples), score(dm.metric, predictions,
                                                  [ex["targets"] for ex in examples]))
    (n_mr, by_mr), (n_row, by_row) = results["per_mr"], results["per_row"]
    assert (n_mr, n_row) == (2, 4)
    assert by_mr.per_example == [1.0, 1.0]  # an exact match among each MR's references
    assert by_row.per_example[1] == by_row.per_example[2] == 1.0
    assert max(by_row.per_example[0], by_row.per_example[3]) < 0.7  # other wordings
    assert by_mr.value == 1.0 > by_row.value
    cached = sorted(p.name for p in (tmp_path / ".cache" / "e2e").glob("test-*.npz"))
    assert len(cached) == 2  # one tokenised test split per protocol
    with pytest.raises(ValueError, match="e2e_protocol must be one of"):
        D.E2E(e2e_protocol="grouped")


def test_gsm8k_answer_number_and_bad_answer(tmp_path, tok):
    assert gsm8k_answer_number("so\n#### 1,234") == "1234"
    assert gsm8k_answer_number("no final line") is None
    assert gsm8k_answer_number("so\n#### $1,000.") == "1000"  # as the metric reads answers
    write_jsonl(tmp_path, "gsm8k", "test", [{"question": "q", "answer": "42"}])
    with pytest.raises(D.BadRowError, match="'answer'"):
        make_dm(D.GSM8K, tmp_path, tok).setup("test")


def test_wikisql_sql_rendering():
    sql = {"sel": 2, "agg": 0, "conds": {"column_index": [0, 1], "operator_index": [0, 1],
                                         "condition": ["O'Neil", "x"]}}
    assert wikisql_to_sql(sql, TABLE) == (
        "SELECT \"School\" FROM \"table\" WHERE \"Player\" = 'O''Neil' AND \"No.\" > 'x'"
    )
    with pytest.raises(D.RowProblem, match="sql"):
        wikisql_to_sql({"sel": 9, "agg": 0, "conds": {}}, TABLE)


def test_alpaca_without_input_and_no_test(tmp_path, tok):
    rows = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}"} for i in range(40)]
    write_jsonl(tmp_path, "alpaca", "train", rows)
    dm = make_dm(D.Alpaca, tmp_path, tok)
    dm.setup("fit")
    assert dm.stats["dev"]["split_rows"] == 2 and dm.stats["train"]["split_rows"] == 38
    ex = dm.split_examples("train")[0]
    assert decode(tok, ex["prompt_ids"]) == llama2("Say 0.")
    with pytest.raises(D.StageNotSupportedError, match="MTBench"):
        dm.setup("test")


def test_mt_bench_predict_only(tmp_path, tok):
    rows = [{"question_id": 81 + i, "category": "writing", "turns": [f"Write {i}.", "More."]}
            for i in range(3)]
    rows[1]["reference"] = ["ref answer", "r2"]
    write_jsonl(tmp_path, "mt_bench", "question", rows)
    dm = make_dm(D.MTBench, tmp_path, tok, padding_side="left")
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert [decode(tok, ids) for ids in batch["prompt_ids"]] == [
        llama2(f"Write {i}.") for i in range(3)
    ]
    assert (batch["labels"] == -100).all()
    assert batch["targets"][1] == {"text": "ref answer", "question_id": 82,
                                   "category": "writing", "turns": ["Write 1.", "More."]}
    assert batch["targets"][0]["text"] == ""
    for stage in ("fit", "test"):
        with pytest.raises(D.StageNotSupportedError, match="predict"):
            dm.setup(stage)
    with pytest.raises(D.StageNotSupportedError):
        dm.test_dataloader()


def test_wikisql_truncates_table_rows_only(tmp_path, tok):
    table = {**TABLE, "rows": [[f"P{i}", str(i), "Duke"] for i in range(100)]}
    row = {"phase": 1, "question": "How many?", "table": table, "sql": SQL}
    write_jsonl(tmp_path, "wikisql", "test", [row])
    dm = make_dm(D.WikiSQL, tmp_path, tok, max_length=600)
    ex = dm.split_examples("test")[0]
    prompt = decode(tok, ex["prompt_ids"])
    assert len(ex["prompt_ids"]) + len(ex["response_ids"]) <= 600 and ex["truncated"]
    assert "\nHow many?\nTable information:\nColumns: Player (text) | No. (real)" in prompt
    assert prompt.endswith(".[/INST]") and "P99" not in prompt
    assert decode(tok, ex["response_ids"]) == ex["targets"]["text"] + "</s>"
