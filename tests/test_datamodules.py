"""Unit tests of the TaskDataModule machinery on tiny fixtures (offline tokenizer, no hub)."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from datamodule_fixtures import (
    decode,
    llama2,
    make_dm,
    rte_rows,
    sst2_rows,
    write_jsonl,
)

import datamodules
from datamodules import (
    RTE,
    SST2,
    BoolQ,
    DataSourceError,
    MissingSplitError,
    TaskDataModule,
)
from datamodules.resume import EpochShuffleSampler

RTE_QUERY = (
    "sentence 1: {}\nsentence 2: {}\n"
    "Are sentence 1 and sentence 2 have entailment relation or not?"
)


pytestmark = pytest.mark.usefixtures("offline_data")


@pytest.fixture
def rte_dir(tmp_path):
    write_jsonl(tmp_path, "rte", "train", rte_rows(6, "t"))
    write_jsonl(tmp_path, "rte", "validation", rte_rows(9, "v"))
    return tmp_path


def test_llama2_prompt_and_response_tokens(rte_dir, tok):
    dm = make_dm(RTE, rte_dir, tok)
    dm.setup("fit")
    ex = dm.split_examples("train")[1]
    assert decode(tok, ex["prompt_ids"]) == llama2(RTE_QUERY.format("t premise 1.", "hyp 1."))
    assert ex["prompt_ids"][0] == tok.bos_token_id
    assert decode(tok, ex["response_ids"]) == "not entailment</s>"
    assert ex["response_ids"][-1] == tok.eos_token_id
    assert ex["targets"] == {"text": "not entailment", "label_word": "not entailment", "label": 1}


@pytest.mark.parametrize("style", ["plain", "tokenizer"])
def test_other_chat_styles(rte_dir, tok, style):
    dm = make_dm(RTE, rte_dir, tok, chat_style=style)
    ex = dm.split_examples("train")[0]
    query = RTE_QUERY.format("t premise 0.", "hyp 0.")
    expected = f"{query}\n" if style == "plain" else f"<|user|>{query}</s><|assistant|>"
    assert decode(tok, ex["prompt_ids"]) == expected
    assert decode(tok, ex["response_ids"]) == "entailment</s>"


@pytest.mark.parametrize("side", ["right", "left"])
def test_batch_contract(rte_dir, tok, side):
    dm = make_dm(RTE, rte_dir, tok, padding_side=side, batch_size=4, eval_batch_size=3)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {
        "input_ids", "attention_mask", "labels", "prompt_mask", "prompt_ids", "targets", "index"
    }
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.long
    assert batch["labels"].dtype == torch.long and batch["prompt_mask"].dtype == torch.bool
    assert batch["input_ids"].shape[0] == 3 and batch["index"] == [0, 1, 2]
    examples = dm.split_examples("dev")
    for i, ex in enumerate(examples[:3]):
        seq = ex["prompt_ids"] + ex["response_ids"]
        real = batch["attention_mask"][i].bool()
        assert batch["input_ids"][i][real].tolist() == seq
        if side == "right":
            assert real[: len(seq)].all() and not real[len(seq) :].any()
        else:
            assert real[-len(seq) :].all() and not real[: -len(seq)].any()
        labels = batch["labels"][i]
        assert labels[labels != -100].tolist() == ex["response_ids"]
        assert batch["input_ids"][i][batch["prompt_mask"][i]].tolist() == ex["prompt_ids"]
        assert not (batch["prompt_mask"][i] & (labels != -100)).any()
        assert batch["prompt_ids"][i] == ex["prompt_ids"]
        assert batch["targets"][i]["text"] == ex["targets"]["text"]
    pad = batch["attention_mask"] == 0
    assert (batch["input_ids"][pad] == tok.pad_token_id).all()


def test_predict_batch_is_prompt_only(rte_dir, tok):
    dm = make_dm(RTE, rte_dir, tok, padding_side="left")
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert (batch["labels"] == -100).all()
    for i, ids in enumerate(batch["prompt_ids"]):
        real = batch["attention_mask"][i].bool()
        assert batch["input_ids"][i][real].tolist() == ids
        assert batch["prompt_mask"][i].tolist() == real.tolist()
        assert decode(tok, ids).endswith("[/INST]")


def test_truncation_keeps_question_and_response(tmp_path, tok):
    passage = "word " * 300
    rows = [{"question": "is it so?", "passage": passage, "label": 1, "idx": 0}]
    write_jsonl(tmp_path, "boolq", "validation", rows * 2)
    dm = make_dm(BoolQ, tmp_path, tok, max_length=200)
    dm.setup("test")
    ex = dm.split_examples("test")[0]
    assert len(ex["prompt_ids"]) + len(ex["response_ids"]) <= 200
    text = decode(tok, ex["prompt_ids"])
    assert text.startswith(llama2("Reference document:\nword word")[:-len("[/INST]")])
    assert text.endswith("word\nQuestion:\nis it so?[/INST]")
    assert decode(tok, ex["response_ids"]) == "yes</s>"
    assert ex["truncated"] and dm.stats["test"]["truncated"] == 1


def test_response_too_long_raises_or_is_dropped(rte_dir, tok):
    with pytest.raises(datamodules.BadRowError, match=r"rte.*'train'.*row 0.*'label'"):
        make_dm(RTE, rte_dir, tok, max_length=10).setup("fit")
    dm = make_dm(RTE, rte_dir, tok, max_length=10, on_bad_row="skip")
    # every row is too long: skipping them all would leave a run on nothing
    with pytest.raises(datamodules.errors.AllRowsDroppedError,
                       match=r"dropped all 6 rows of split 'train'.*first: source 'train' row 0"):
        dm.setup("fit")


def test_halve_validation_split_is_seeded(tmp_path, tok):
    write_jsonl(tmp_path, "rte", "validation", rte_rows(41))

    def rows(seed: int, split: str) -> list[int]:
        dm = make_dm(RTE, tmp_path, tok, seed=seed)
        return [ex["row"] for ex in dm.split_examples(split)]

    dev, test = rows(1, "dev"), rows(1, "test")
    assert len(dev) == 20 and len(test) == 21
    assert sorted(dev + test) == list(range(41))
    assert rows(1, "dev") == dev and rows(2, "dev") != dev


def test_train_holdout_split_and_subsets(tmp_path, tok):
    write_jsonl(tmp_path, "sst2", "train", sst2_rows(1030))
    write_jsonl(tmp_path, "sst2", "validation", sst2_rows(7))
    kw = {"max_train_examples": 5, "max_dev_examples": 4}
    dm = make_dm(SST2, tmp_path, tok, **kw)
    dm.setup(None)
    assert {s: dm.stats[s]["split_rows"] for s in dm.stats} == {
        "train": 30, "dev": 1000, "test": 7
    }
    assert len(dm.split_examples("train")) == 5 and len(dm.split_examples("dev")) == 4
    assert len(dm.split_examples("test")) == 7
    train_rows = [ex["row"] for ex in dm.split_examples("train")]
    again = make_dm(SST2, tmp_path, tok, use_cache=False, **kw)
    assert [ex["row"] for ex in again.split_examples("train")] == train_rows
    other = make_dm(SST2, tmp_path, tok, seed=7, **kw)
    assert [ex["row"] for ex in other.split_examples("train")] != train_rows


def test_missing_split_only_when_needed(tmp_path, tok):
    write_jsonl(tmp_path, "boolq", "validation", [
        {"question": "q?", "passage": "p.", "label": 0, "idx": i} for i in range(4)
    ])
    dm = make_dm(BoolQ, tmp_path, tok)
    dm.setup("test")
    assert len(dm.split_examples("test")) == 2
    with pytest.raises(MissingSplitError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert "boolq" in message and "'train'" in message
    assert str(tmp_path / "boolq" / "train.jsonl") in message


def test_no_source_names_both_options(tok):
    dm = RTE(use_cache=False)
    dm.tokenizer = tok
    with pytest.raises(DataSourceError, match="PARADE_DATA_DIR") as err:
        dm.setup("fit")
    assert "nyu-mll/glue" in str(err.value) and "hub" in str(err.value)


def test_env_data_dir_and_gzip(tmp_path, tok, monkeypatch):
    path = tmp_path / "rte" / "validation.jsonl.gz"
    path.parent.mkdir()
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rte_rows(4))
    monkeypatch.setenv("PARADE_DATA_DIR", str(tmp_path))
    dm = RTE(cache_dir=str(tmp_path / "c"))
    dm.tokenizer = tok
    dm.setup("test")
    assert len(dm.split_examples("test")) == 2


def test_cache_is_reused_and_keyed(rte_dir, tok, monkeypatch):
    first = make_dm(RTE, rte_dir, tok)
    first.setup("fit")
    calls = []
    original = datamodules.encoding.encode_rows
    monkeypatch.setattr(
        datamodules.encoding, "encode_rows", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    loads = []
    real_load = datamodules.sources.load_local
    monkeypatch.setattr(datamodules.sources, "load_local",
                        lambda *a, **k: loads.append(1) or real_load(*a, **k))
    second = make_dm(RTE, rte_dir, tok)
    second.setup("fit")
    assert not calls and not loads  # a cache hit reads neither the rows nor tokenises
    assert second.split_examples("dev") == first.split_examples("dev")
    assert second.stats == first.stats
    make_dm(RTE, rte_dir, tok, max_length=1000).setup("fit")
    assert len(calls) == 2  # another max_length is another cache entry (train and dev)
    monkeypatch.setattr(datamodules.glue, "NLI_WORDS", ("yes", "no"))  # a module constant...
    monkeypatch.setattr(RTE, "label_words", datamodules.glue.NLI_WORDS)  # ...as RTE sees it
    make_dm(RTE, rte_dir, tok).setup("fit")
    assert len(calls) == 4  # other label words, other entry
    make_dm(RTE, rte_dir, tok, max_new_tokens=3).setup("fit")
    assert len(calls) == 4  # the generation length does not change the examples


def test_a_damaged_cache_file_is_rebuilt(rte_dir, tok):
    make_dm(RTE, rte_dir, tok).setup("fit")
    files = sorted((rte_dir / ".cache" / "rte").glob("*.npz"))
    assert files
    for path in files:
        path.write_bytes(path.read_bytes()[:100])  # truncated, as by a crash
    again = make_dm(RTE, rte_dir, tok)
    again.setup("fit")
    assert len(again.split_examples("train")) == 6


def test_hparams_tokenizer_and_accumulation(monkeypatch):
    dm = SST2(backbone="tiny-llama", batch_size=4)
    assert dm.hparams.backbone == "tiny-llama" and dm.hparams.chat_style == "llama2"
    assert dm.tokenizer.eos_token == "</s>"
    assert dm.accumulate_grad_batches == 32 and RTE(batch_size=16).accumulate_grad_batches == 1
    with pytest.raises(TypeError):
        TaskDataModule()
    with pytest.raises(ValueError, match="chat_style"):
        RTE(chat_style="chatml")


def test_train_loader_shuffles_deterministically(rte_dir, tok):
    def order(seed: int) -> list[int]:
        dm = make_dm(RTE, rte_dir, tok, seed=seed, batch_size=6)
        return next(iter(dm.train_dataloader()))["index"]

    assert order(3) == order(3) and sorted(order(3)) == list(range(6))
    assert order(3) != list(range(6)) and order(3) != order(4)  # shuffled, by the seed


def test_a_new_task_is_one_class(tmp_path, tok):
    class MRPC(TaskDataModule):
        task = "mrpc_test"
        split_rule = "halve_validation"
        template = "sentence 1: {sentence1}\nsentence 2: {sentence2}\nAre they paraphrases?"
        truncate_field = "sentence1"
        label_words = ("no", "yes")
        metric = "accuracy"
        max_new_tokens = 5

    write_jsonl(tmp_path, "mrpc_test", "validation", rte_rows(4))
    dm = make_dm(MRPC, tmp_path, tok)
    dm.setup("validate")
    ex = dm.dev_examples()[0]
    assert decode(tok, ex["prompt_ids"]).endswith("Are they paraphrases?[/INST]")
    assert ex["targets"]["label_word"] in ("no", "yes")


def test_epoch_shuffle_sampler_resumes_mid_epoch():
    sampler = EpochShuffleSampler(10, seed=3)
    first, second = sampler.order(0), sampler.order(1)
    assert sorted(first) == list(range(10)) and first != second
    assert list(sampler) == first  # epoch 0 by default
    assert EpochShuffleSampler(10, seed=3).order(1) == second  # (seed, epoch) alone decide
    assert EpochShuffleSampler(10, seed=4).order(0) != first
    sampler.resume_at(0, 4)
    assert list(sampler) == first[4:] and list(sampler) == first[4:]  # every pass of epoch 0
    sampler.set_epoch(1)
    assert list(sampler) == second  # the resumed epoch is over
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_length_grouped_order_keeps_each_windows_rows_and_resumes():
    lengths = [(i * 37) % 101 for i in range(230)]
    plain = EpochShuffleSampler(230, seed=5)
    grouped = EpochShuffleSampler(230, seed=5, lengths=lengths, batch_size=4, megabatch=10)
    order, base = grouped.order(2), plain.order(2)
    for start in range(0, 230, 40):  # windows of 10 batches of 4: the same rows as the plain order
        assert sorted(order[start:start + 40]) == sorted(base[start:start + 40])
    batches = [order[i:i + 4] for i in range(0, 228, 4)]
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    random_spread = [max(lengths[i] for i in base[j:j + 4]) - min(lengths[i] for i in base[j:j + 4])
                     for j in range(0, 228, 4)]
    assert sum(spread) * 5 < sum(random_spread)  # similar lengths together
    assert order[:40] != sorted(order[:40], key=lambda i: -lengths[i])  # batches shuffled
    assert grouped.order(2) == order and grouped.order(3) != order  # (seed, epoch) decide
    grouped.set_epoch(2)
    grouped.resume_at(2, 9)
    assert list(grouped) == order[9:]
    with pytest.raises(ValueError, match="lengths has 3 entries for 230 examples"):
        EpochShuffleSampler(230, seed=5, lengths=[1, 2, 3])


def test_group_by_length_pads_train_batches_less(rte_dir, tok):
    widths = {}
    for grouped in (False, True):
        dm = make_dm(RTE, rte_dir, tok, batch_size=2, group_by_length=grouped)
        dm.setup("fit")
        batches = list(dm.train_dataloader())
        widths[grouped] = sum(b["input_ids"].numel() for b in batches)
        assert sorted(i for b in batches for i in b["index"]) == list(range(len(dm._load("train"))))
    assert widths[True] < widths[False]


def test_train_loader_state_round_trip(rte_dir, tok):
    dm = make_dm(RTE, rte_dir, tok, batch_size=2)
    dm.setup("fit")
    assert dm.state_dict() == {}  # no trainer attached
    full = [b["index"] for b in dm.train_dataloader()]
    dm.load_state_dict({"epoch": 0, "batches": 2, "batch_size": 1})  # 2 examples consumed
    loader = dm.train_dataloader()
    assert [i for b in loader for i in b["index"]] == [i for b in full for i in b][2:]
