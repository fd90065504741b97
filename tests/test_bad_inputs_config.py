"""Bad configuration: one clear error naming the file, line, option or value, within seconds.

(Part of the bad-input suite; docs/reliability.md lists every case and its test.)
"""

from __future__ import annotations

import pytest

from methods import IA3, LoRA, PaperIA3, Parade, Parade1, Parade2, Parade3, Parade4
from methods.backbones import ALIASES, load_backbone, load_tokenizer
from parade_lightning.cli import build_cli, main

PARADES = [Parade, Parade1, Parade2, Parade3, Parade4]


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("model:\n  lr: 0.1\n  backbone: [unclosed\ntrainer:\n  max_steps: 2\n", 4,
     "expected ',' or ']'"),
    ("model:\n\tlr: 0.1\n", 2, "found character '\\t' that cannot start any token"),
    ("model:\n  lr: 1\n lr: 2\n", 3, "expected <block end>"),
], ids=["unclosed-list", "tab", "bad-indent"])
def test_malformed_yaml_names_file_and_line(tmp_path, capsys, text, line, problem):
    path = tmp_path / "my_config.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit):
        build_cli(["fit", "--config", str(path)])
    err = capsys.readouterr().err
    assert f"{path}, line {line}" in err and "invalid YAML" in err and problem in err


@pytest.mark.parametrize("cls", PARADES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("rank", [0, -4])
def test_parade_rank_below_one_is_refused(cls, rank):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: rank must be an integer >= 1, "
                                         rf"got {rank} \(rank 0 would leave only"):
        cls(rank=rank)


@pytest.mark.parametrize("r", [0, -1])
def test_lora_rank_below_one_is_refused(r):
    with pytest.raises(ValueError, match=rf"LoRA rank r must be >= 1 \(an integer\), got {r}"):
        LoRA(r=r)


@pytest.mark.parametrize("cls", [IA3, PaperIA3], ids=lambda c: c.__name__)
@pytest.mark.parametrize("dim", [0, -2])
def test_ia3_dim_below_one_is_refused(cls, dim):
    with pytest.raises(ValueError, match=rf"{cls.__name__} dim must be an integer >= 1 or None, "
                                         rf"got {dim}"):
        cls(dim=dim)


@pytest.mark.parametrize(("rank", "capsules"), [(10, 4), (12, 5), (6, 4)])
def test_capsules_that_do_not_divide_the_rank(rank, capsules):
    with pytest.raises(ValueError, match=rf"rank r={rank} must be divisible by the number of "
                                         rf"capsules K={capsules}"):
        Parade(rank=rank, num_capsules=capsules)


def test_zero_capsules_is_refused():
    with pytest.raises(ValueError, match="num_capsules must be an integer >= 1, got 0"):
        Parade(rank=12, num_capsules=0)


@pytest.mark.parametrize(("make", "name"), [
    (lambda: Parade(targets=()), "Parade"),
    (lambda: IA3(targets=(), feedforward=()), "IA3"),
    (lambda: LoRA(targets=[]), "LoRA"),
], ids=["parade", "ia3", "lora"])
def test_empty_targets_are_refused(make, name):
    with pytest.raises(ValueError, match=rf"{name}:? targets is empty; name at least one role"):
        make()


def test_empty_targets_from_the_command_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="targets is empty"):
        build_cli(["fit", "--model.backbone", "tiny-llama", "--data", "RTE",
                   "--data.data_dir", str(tmp_path), "--model.method", "Parade",
                   "--model.method.init_args.targets", "[]",
                   "--trainer.logger", "false"])


@pytest.mark.parametrize("name", ["smollm2-13", "meta-llama/Llama-2-7b-hf-typo"])
def test_unknown_backbone_offline_fails_at_once_naming_the_aliases(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for load in (load_backbone, load_tokenizer):
        with pytest.raises(OSError) as error:
            load(name)
        message = str(error.value)
        assert f"backbone {name!r} is not a known alias" in message
        assert all(alias in message for alias in ALIASES) and "local path" in message
        assert message.index(ALIASES[-1]) < message.index("hub")  # aliases first, hub last
        assert "HF_HUB_OFFLINE is set" in message


def test_a_name_that_cannot_be_a_hub_id():
    with pytest.raises(OSError, match=r"backbone 'my model!' is not a known alias .* nor is "
                                         r"it a Hugging Face hub id"):
        load_backbone("my model!")


def test_the_parade_command_prints_an_input_error_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.backbone", "no-such-alias", "--data", "RTE", "--data.data_dir",
              str(tmp_path), "--trainer.logger", "false"])
    assert str(exit_info.value.code).startswith("error: backbone 'no-such-alias' is not a known")


def test_rank_zero_on_the_command_line_is_one_error_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.backbone", "tiny-llama", "--data", "RTE", "--data.data_dir",
              str(tmp_path), "--model.method", "Parade", "--model.method.init_args.rank", "0",
              "--trainer.logger", "false"])
    assert str(exit_info.value.code).startswith("error: Parade: rank must be an integer >= 1")


def test_a_missing_local_backbone_folder():
    with pytest.raises(FileNotFoundError, match="backbone folder not found: /nonexistent/model"):
        load_backbone("/nonexistent/model")


def test_unknown_dev_generation_mode_is_refused():
    from callbacks import DevGenerationEval
    from parade_lightning import PeftLitModule

    with pytest.raises(ValueError, match="model.dev_generation must be 'every' or 'tested', "
                                         "got 'sometimes'"):
        PeftLitModule(backbone="tiny-llama", dev_generation="sometimes")
    with pytest.raises(ValueError, match=r"DevGenerationEval: at must be one of \('every', "
                                         r"'tested'\) or None, got 'last'"):
        DevGenerationEval(at="last")
