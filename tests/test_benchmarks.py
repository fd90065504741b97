"""The benchmark scripts' ``--quick`` mode: JSON schema and Markdown rows (never timings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of scripts, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import inference, training  # noqa: E402
from benchmarks.inference_rows import SINGLE, TENANT, tenant_names  # noqa: E402
from parade_lightning import load_tokenizer  # noqa: E402

STAT_KEYS = {"median", "min", "max", "n"}
MACHINE_KEYS = {"device", "cpu", "cpu_cores", "torch_threads", "dtype", "torch", "transformers"}


def check_stat(stat: dict, repeats: int) -> None:
    assert set(stat) == STAT_KEYS
    assert stat["n"] == repeats
    assert stat["min"] <= stat["median"] <= stat["max"]
    assert stat["min"] >= 0


def check_common(payload: dict, path: Path, script: str) -> str:
    on_disk = json.loads(path.read_text())
    assert on_disk == json.loads(json.dumps(payload))  # what main() returns is what it wrote
    assert on_disk["command"].startswith(f"python benchmarks/{script}.py --quick")
    assert MACHINE_KEYS <= set(on_disk["machine"])
    for g in on_disk["goals"]:
        assert {"goal", "value", "threshold", "holds", "detail"} <= set(g)
    md = path.with_suffix(".md").read_text()
    assert on_disk["command"] in md and "## Goals" in md
    return md


def table_rows(md: str) -> list[list[str]]:
    """Body rows of the Markdown tables (headers are the lines above a ``|---`` line)."""
    lines = md.splitlines()
    return [[c.strip() for c in line.strip("|").split("|")]
            for line, below in zip(lines, lines[1:] + [""], strict=True)
            if line.startswith("| ") and not below.startswith("|---")]


def test_inference_quick(tmp_path: Path) -> None:
    out = tmp_path / "inference.json"
    payload = inference.main(["--quick", "--device", "cpu", "--out", str(out)])
    md = check_common(payload, out, "inference")
    s = payload["settings"]
    assert s["backbone"] == "tiny-llama" and s["prompt_tokens"] == 24
    cells = {(b, k) for b in s["batch_sizes"] for k in s["beams"]}
    expected = {(key, b, k, None) for key in SINGLE for b, k in cells}
    expected |= {(key, s["tenant_batch"], k, n) for key in TENANT
                 for k in s["tenant_beams"] for n in (1, s["tenant_batch"])}
    got = [(r["row"], r["batch_size"], r["num_beams"], r["tenants"]) for r in payload["rows"]]
    assert sorted(got, key=str) == sorted(expected, key=str)  # every row once
    for r in payload["rows"]:
        for metric in ("prefill_ms", "decode_ms_per_token", "decode_tokens_per_s",
                       "e2e_tokens_per_s", "e2e_s"):
            check_stat(r[metric], s["repeats"])
        assert r["memory"]["kind"] and r["memory"]["peak_mib"] > 0
        assert {k: len(v) for k, v in r["samples"].items()} == {
            k: s["repeats"] for k in ("prefill_ms", "decode_ms_per_token", "e2e_s")}
        assert (r["adapter_parameters"] == 0) == (r["row"] in ("base", "base-compiled"))
    # the Markdown has one line per JSON row, with the row's label and cell
    md_rows = table_rows(md.split("## Goals")[0])
    assert len(md_rows) == len(payload["rows"])
    for r in payload["rows"]:
        assert [r["label"], str(r["batch_size"]), str(r["num_beams"])] in [x[:3] for x in md_rows]
    names = {g["goal"] for g in payload["goals"]}
    assert any("PEFT" in n for n in names) and any("prefill" in n for n in names)


def test_training_quick(tmp_path: Path) -> None:
    out = tmp_path / "training.json"
    payload = training.main(["--quick", "--device", "cpu", "--out", str(out)])
    md = check_common(payload, out, "training")
    s = payload["settings"]
    assert [(r["precision"], r["row"]) for r in payload["rows"]] == [
        (p, m) for p in s["precisions"] for m in training.METHODS]
    for r in payload["rows"]:
        for metric in ("step_s", "forward_s", "backward_s", "optimizer_s"):
            check_stat(r[metric], s["repeats"])
        assert (r["adapter_parameters"] == 0) == (r["row"] == "backbone")
        assert len(r["samples"]["step_s"]) == s["repeats"]
    assert {r["attention"] for r in payload["rows"]} == {"sdpa"}  # the backbone's own
    md_rows = table_rows(md.split("## Goals")[0])
    assert [(x[0], x[1], x[2]) for x in md_rows] == [(r["precision"], "sdpa", r["label"])
                                                     for r in payload["rows"]]
    assert len(payload["goals"]) == 3 * len(s["precisions"])


def test_training_attention_axis(tmp_path: Path) -> None:
    """``--attention`` times every row with each kernel; goals compare within a kernel."""
    out = tmp_path / "training.json"
    payload = training.main(["--quick", "--device", "cpu", "--out", str(out), "--precisions",
                             "bf16-weights", "--methods", "parade", "lora",
                             "--attention", "sdpa", "eager"])
    md = check_common(payload, out, "training")
    assert [(r["attention"], r["row"], r["backbone_dtype"]) for r in payload["rows"]] == [
        (a, m, "bfloat16") for a in ("sdpa", "eager") for m in ("parade", "lora")]
    assert [g["detail"] for g in payload["goals"]] == ["bf16-weights, sdpa", "bf16-weights, eager"]
    assert [x[1] for x in table_rows(md.split("## Goals")[0])] == ["sdpa", "sdpa", "eager", "eager"]
    with pytest.raises(ValueError, match="attn_implementation='flashy'"):
        training.main(["--quick", "--device", "cpu", "--out", str(out), "--methods", "parade",
                       "--attention", "flashy"])


def test_training_loss_axis(tmp_path: Path) -> None:
    """``--loss scored full`` times every row with the module's loss and with Hugging Face's;
    the default is the module's; goals compare within a loss."""
    out = tmp_path / "training.json"
    payload = training.main(["--quick", "--device", "cpu", "--out", str(out), "--precisions",
                             "fp32", "--methods", "backbone", "parade", "lora",
                             "--loss", "scored", "full"])
    md = check_common(payload, out, "training")
    assert [(r["loss"], r["row"]) for r in payload["rows"]] == [
        (lk, m) for lk in ("scored", "full") for m in ("backbone", "parade", "lora")]
    assert [g["detail"] for g in payload["goals"]] == ["fp32, scored loss", "fp32, full loss"]
    assert [x[-1] for x in table_rows(md.split("## Goals")[0])] == ["scored"] * 3 + ["full"] * 3
    default = training.main(["--quick", "--device", "cpu", "--out", str(out), "--precisions",
                             "fp32", "--methods", "parade"])
    assert [r["loss"] for r in default["rows"]] == ["scored"]


def test_prompt_follows_template_or_is_repeated() -> None:
    tok = load_tokenizer("tiny-llama")
    ids, how = inference.build_prompt(tok, None)
    assert how == "chat template"
    assert tok.decode(ids).endswith("<|assistant|>")
    cut, how = inference.build_prompt(tok, 40)
    assert len(cut) == 40 and cut == ids[-40:] and "last 40" in how
    tok.chat_template = None
    plain, how = inference.build_prompt(tok, None)
    assert len(plain) == inference.PAPER_PROMPT_TOKENS and "repeated" in how


def test_tenant_rows_assignment() -> None:
    assert tenant_names(4, 1) == ["t0"] * 4
    assert tenant_names(4, 4) == ["t0", "t1", "t2", "t3"]


@pytest.mark.parametrize("argv", [["--quick", "--new-tokens", "1"],
                                  ["--quick", "--methods", "nope"]])
def test_inference_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        inference.parse_args(argv)
