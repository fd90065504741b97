"""Task mistakes are caught when the datamodule is set up, before any row is read, each with
one message that says what to change in the task (datamodules/task_checks.py)."""

from __future__ import annotations

import pytest
from datamodule_fixtures import make_dm, write_jsonl

import datamodules as D
from datamodules import encoding
from datamodules.errors import MissingSplitError, TaskDefinitionError

pytestmark = pytest.mark.usefixtures("offline_data")


def nli_rows(n: int, classes: int = 3) -> list[dict]:
    return [{"premise": f"p {i}.", "hypothesis": f"h {i}.", "label": i % classes}
            for i in range(n)]


def nli(**kwargs) -> dict:
    return {"task": "nli", "template": "{premise}\n{hypothesis}\nRelation?",
            "label_words": ["entailment", "neutral", "contradiction"], "metric": "accuracy",
            "split_rule": "halve_validation", "truncate_field": "premise", **kwargs}


@pytest.fixture
def no_rows_read(monkeypatch):
    """Fail the test if any row reaches the encoder (the checks must come first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a row was read before the task was checked")
    monkeypatch.setattr(encoding, "encode_rows", refuse)


def setup_error(tmp_path, tok, stage="fit", **declared):
    dm = make_dm(D.DeclarativeTask, tmp_path, tok, **nli(**declared))
    with pytest.raises((TaskDefinitionError, MissingSplitError)) as err:
        dm.setup(stage)
    return str(err.value)


@pytest.fixture
def nli_data(tmp_path):
    write_jsonl(tmp_path, "nli", "train", nli_rows(30))
    write_jsonl(tmp_path, "nli", "validation", nli_rows(6))
    return tmp_path


def test_placeholder_that_names_no_field(nli_data, tok, no_rows_read):
    message = setup_error(nli_data, tok, template="{premise}\n{hypothsis}\nRelation?")
    assert "{hypothsis}" in message and "name no field of" in message
    assert "hypothesis" in message and "Fix `template`" in message
    assert "on_bad_row" not in message and "Fix the data" not in message


def test_too_few_label_words_found_from_the_whole_file(nli_data, tok, no_rows_read):
    # Labels 0, 1, 2 cycle; a 2-row sample of train would hold no label 2, the check still
    # reads the whole label column, also with on_bad_row="skip".
    message = setup_error(nli_data, tok, label_words=["entailment", "neutral"],
                          max_train_examples=2, on_bad_row="skip")
    assert "labels [0, 1, 2]" in message and "no word for [2]" in message
    assert "`label_words`" in message


def test_truncate_field_not_in_template(nli_data, tok, no_rows_read):
    message = setup_error(nli_data, tok, truncate_field="passage")
    assert "truncate_field 'passage'" in message and "premise, hypothesis" in message


def test_missing_split_files_listed_before_anything_is_loaded(tmp_path, tok, no_rows_read):
    write_jsonl(tmp_path, "nli", "train", nli_rows(8))  # no validation file: no dev, no test
    message = setup_error(tmp_path, tok, split_rule="halve_validation")
    assert "split_rule 'halve_validation'" in message
    assert "split 'dev' needs" in message
    assert str(tmp_path / "nli" / "validation.jsonl") in message and "holds: train.jsonl" in message
    assert "`split_rule`" in message


def test_accuracy_needs_label_words(tmp_path, tok):
    dm = make_dm(D.DeclarativeTask, tmp_path, tok, task="gen", template="{a}",
                 response_field="b", metric="accuracy")
    with pytest.raises(TaskDefinitionError, match="declares no label_words"):
        dm.setup("test")


def test_python_task_checked_too_and_unused_labelled_file_reported(tmp_path, tok):
    class BadRTE(D.RTE):
        template = "{sentence1} {sentence_2}"

    rows = [{"sentence1": "a.", "sentence2": "b.", "label": i % 2} for i in range(4)]
    for source in ("train", "validation", "test"):
        write_jsonl(tmp_path, "rte", source, rows)
    with pytest.raises(TaskDefinitionError, match=r"\{sentence_2\} name no field"):
        make_dm(BadRTE, tmp_path, tok).setup("test")
    with pytest.warns(UserWarning, match=r"test.jsonl has gold labels but split_rule "
                                         r"'halve_validation' never reads it"):
        make_dm(D.RTE, tmp_path, tok).setup("test")
