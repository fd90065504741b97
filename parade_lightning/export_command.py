"""``parade export``: a training checkpoint -> an adapter folder that travels.

    parade export --ckpt_path runs/rte/version_0/checkpoints/best-step=400.ckpt --out adapters/rte
    parade export --ckpt_path ... --out adapters/rte-peft --format peft   # LoRA, (IA)³, FromPeft

``--format parade`` (default) writes :func:`methods.save_pretrained`'s folder (weights,
``adapter_config.json`` with the method, backbone and its config hash, ``README.md`` card with
the run's task, data, best dev loss and test metrics when the run recorded them);
``--format peft`` writes a Hugging Face PEFT folder (:func:`methods.export_peft`) that
``peft.PeftModel.from_pretrained`` loads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from methods.adapter_files import load_adapter, save_pretrained
from methods.export import export_peft
from methods.pretrained import load_pretrained

#: Data-module arguments worth a line in the model card.
_DATA_KEYS = ("data_dir", "max_length", "max_train_examples", "max_dev_examples",
              "max_test_examples", "seed", "chat_style")


def card_from_checkpoint(ckpt_path: Path) -> dict[str, Any]:
    """What the run recorded about itself: the task and data (data-module hyper-parameters),
    the best monitored dev value (ModelCheckpoint's state), the step, and the test metrics of
    ``metrics.json`` in the run folder when they were computed with this checkpoint."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    data = ckpt.get("datamodule_hyper_parameters") or {}
    card: dict[str, Any] = {"data": {k: data[k] for k in _DATA_KEYS if data.get(k) is not None}}
    if data.get("_class_path"):
        card["data"]["datamodule"] = data["_class_path"]
    hparams = ckpt.get("hyper_parameters") or {}
    card["training"] = {"global_step": ckpt.get("global_step"), "epoch": ckpt.get("epoch"),
                        **{k: hparams[k] for k in ("lr", "scheduler", "warmup_ratio",
                                                   "backbone_dtype") if k in hparams}}
    metrics: dict[str, Any] = {}
    for key, state in (ckpt.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
            metrics[f"best {state.get('monitor')}"] = float(state["best_model_score"])
    report = ckpt_path.parent.parent / "metrics.json"
    if report.is_file():
        result = json.loads(report.read_text())
        card["task"] = result.get("task")
        if Path(str(result.get("ckpt_path"))).resolve() == ckpt_path.resolve():
            metrics[f"test {result['metric']}"] = result["value"]
            metrics.update({f"test {k}": v for k, v in (result.get("extras") or {}).items()})
            metrics["test examples"] = result.get("num_examples")
            metrics["test beams"] = result.get("num_beams")
    if "task" not in card and data.get("_class_path"):
        card["task"] = data["_class_path"].rsplit(".", 1)[-1].lower()
    card["metrics"] = metrics
    return card


def export(ckpt_path: str | Path, out: str | Path, fmt: str = "parade",
           backbone: str | None = None, dtype: str = "float32") -> Path:
    """Turn a ``parade fit`` checkpoint into an adapter folder (see the module doc)."""
    ckpt_path = Path(ckpt_path)
    adapter = load_adapter(ckpt_path)
    model = load_pretrained(adapter, dtype=dtype, backbone=backbone)
    name = backbone or adapter.backbone
    if fmt == "peft":
        return export_peft(model, out, base_model_name_or_path=name)
    if fmt != "parade":
        raise ValueError(f"--format must be 'parade' or 'peft', got {fmt!r}")
    return save_pretrained(model, out, backbone=name, card=card_from_checkpoint(ckpt_path))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="parade export", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint of `parade fit`")
    parser.add_argument("--out", required=True, help="the folder to write")
    parser.add_argument("--format", default="parade", choices=("parade", "peft"),
                        help="parade: save_pretrained's folder; peft: a PEFT adapter folder")
    parser.add_argument("--backbone", default=None,
                        help="load this backbone instead of the recorded one (a moved copy)")
    parser.add_argument("--dtype", default="float32", help="dtype to load the backbone in")
    args = parser.parse_args(argv)
    folder = export(args.ckpt_path, args.out, args.format, args.backbone, args.dtype)
    print(f"wrote {folder}")
