"""Tasks declared in YAML only (datamodules.DeclarativeTask): the shipped MRPC (classification)
and SAMSum (generation) configs on fixtures, the cache key, pickling, declaration errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from datamodule_fixtures import decode, llama2, write_jsonl

import datamodules as D
from datamodules.errors import TaskDefinitionError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("offline_data")


def mrpc_rows(n: int) -> list[dict]:
    return [{"sentence1": f"first {i}.", "sentence2": f"second {i}.", "label": i % 2, "idx": i}
            for i in range(n)]


def samsum_rows(n: int) -> list[dict]:
    return [{"id": str(i), "dialogue": f"A: hi {i}\nB: bye {i}", "summary": f"They greet {i}."}
            for i in range(n)]


def from_config(name: str, data_dir: Path, tok, **overrides):
    dm = D.DeclarativeTask.from_yaml(ROOT / f"configs/tasks/{name}.yaml", data_dir=str(data_dir),
                                     cache_dir=str(data_dir / ".cache"), **overrides)
    dm.tokenizer = tok
    return dm


def test_mrpc_yaml_classification_task(tmp_path, tok):
    write_jsonl(tmp_path, "mrpc", "train", mrpc_rows(6))
    write_jsonl(tmp_path, "mrpc", "validation", mrpc_rows(8))
    dm = from_config("mrpc", tmp_path, tok, batch_size=2)
    assert isinstance(dm, D.DeclarativeTask) and isinstance(dm, D.TaskDataModule)
    assert (dm.task, dm.metric, dm.label_words) == ("mrpc", "accuracy", ("no", "yes"))
    dm.setup("fit")
    dm.setup("test")
    assert [len(dm.split_examples(s)) for s in ("train", "dev", "test")] == [6, 4, 4]
    ex = dm.split_examples("train")[1]
    query = ("sentence 1: first 1.\nsentence 2: second 1.\n"
             "Do sentence 1 and sentence 2 mean the same thing?")
    assert decode(tok, ex["prompt_ids"]) == llama2(query)
    assert decode(tok, ex["response_ids"]) == "yes</s>"
    assert ex["targets"] == {"text": "yes", "label_word": "yes", "label": 1}
    assert dm.prompt({"sentence1": "first 1.", "sentence2": "second 1."}) == llama2(query)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 2
    assert dm.hparams.template == dm.template  # the declarations are hyper-parameters too


def test_samsum_yaml_generation_task(tmp_path, tok):
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path, "samsum", split, samsum_rows(3))
    dm = from_config("samsum", tmp_path, tok)
    dm.setup("test")
    ex = dm.split_examples("test")[2]
    assert decode(tok, ex["response_ids"]) == "They greet 2.</s>"
    assert ex["targets"]["text"] == "They greet 2."
    assert (dm.metric, dm.max_new_tokens, dm.truncate_field) == ("rouge_l", 64, "dialogue")


def test_declarations_are_part_of_the_cache_key(tmp_path, tok):
    write_jsonl(tmp_path, "mrpc", "train", mrpc_rows(4))
    write_jsonl(tmp_path, "mrpc", "validation", mrpc_rows(4))
    texts = []
    for template, words in (("A {sentence1} B {sentence2}", ["no", "yes"]),
                            ("B {sentence2} A {sentence1}", ["no", "yes"]),
                            ("B {sentence2} A {sentence1}", ["different", "same"])):
        dm = D.DeclarativeTask(task="mrpc", template=template, label_words=words,
                               split_rule="halve_validation", data_dir=str(tmp_path),
                               cache_dir=str(tmp_path / "cache"))
        dm.tokenizer = tok
        ex = dm.split_examples("train")[1]
        texts.append((decode(tok, ex["prompt_ids"]), decode(tok, ex["response_ids"])))
    assert len(set(texts)) == 3  # no stale hit although task name and data are the same
    assert texts[2][1] == "same</s>"
    assert len(list((tmp_path / "cache" / "mrpc").glob("train-*.npz"))) == 3


def test_pickles_and_keeps_python_tasks_apart(tmp_path, tok):
    dm = D.DeclarativeTask(task="rte", template="{sentence1} {sentence2}",
                           label_words=["a", "b"], batch_size=3)
    again = pickle.loads(pickle.dumps(dm))
    assert type(again) is type(dm) and again.hparams.batch_size == 3
    assert again.template == "{sentence1} {sentence2}"
    assert D.get_task("rte") is D.RTE and D.RTE.template != dm.template  # registry untouched


@pytest.mark.parametrize("kwargs, words", [
    ({}, "exactly one of `label_words`"),
    ({"label_words": ["no"], "response_field": "summary"}, "exactly one of `label_words`"),
    ({"label_words": "no yes"}, "list of non-empty words"),
    ({"task": "a/b", "response_field": "summary"}, "without '/'"),
])
def test_declaration_mistakes_say_what_to_fix(kwargs, words):
    args = {"task": "t", "template": "{x}", **kwargs}
    with pytest.raises(TaskDefinitionError, match=words):
        D.DeclarativeTask(**args)
