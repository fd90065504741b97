"""Answer new rows of a task from Python with a trained adapter::

    model = load_adapter_model("runs/lora/mrpc/version_0/checkpoints/best-step=200.ckpt")
    task = DeclarativeTask.from_yaml("configs/tasks/mrpc.yaml")   # or datamodules.RTE()
    predict(model, task, [{"sentence1": "…", "sentence2": "…"}])  # -> ["yes"]

:func:`load_adapter_model` puts an adapter (a ``parade fit`` checkpoint or a folder written by
:func:`methods.adapter_files.save_adapter`) on its backbone; :func:`predict` renders each row
with the task's template and chat style (:meth:`TaskDataModule.prompt
<datamodules.task_datamodule.TaskDataModule.prompt>`) and generates with the module's beam
size and the task's generation length, as ``parade test`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datamodules.task_datamodule import TaskDataModule
from methods.adapter_files import load_adapter
from methods.registry import method_from_config
from parade_lightning.lit_module import PeftLitModule


def load_adapter_model(source: str | Path, backbone: str | None = None,
                       **hparams: Any) -> PeftLitModule:
    """A trained adapter on its frozen backbone, in eval mode.

    Args:
        source: a checkpoint of ``parade fit`` (``*.ckpt``: method, backbone and generation
            settings come from its hyper-parameters) or an adapter folder (``save_adapter``).
        backbone: load the adapter onto this backbone instead of the one it names (needed
            for an adapter folder saved without a backbone name).
        **hparams: other :class:`PeftLitModule` arguments (``num_beams``, ``backbone_dtype``…).
    """
    path = Path(source)
    if backbone is not None:
        hparams["backbone"] = backbone
    if path.suffix == ".ckpt" and path.is_file():
        module = PeftLitModule.load_from_checkpoint(path, map_location="cpu", **hparams)
    else:
        adapter = load_adapter(path)  # clear errors for anything that is not an adapter
        hparams.setdefault("backbone", adapter.backbone)
        if hparams["backbone"] is None:
            raise ValueError(f"{path}: the adapter does not name its backbone; pass "
                             "backbone=… (the backbone it was trained on)")
        module = PeftLitModule(method=method_from_config(adapter.method), **hparams)
        module.method.load_adapter_state_dict(module.model, adapter.state)
    return module.eval()


def predict(model: PeftLitModule, task: TaskDataModule, rows: Sequence[dict[str, Any]],
            **generate_kwargs: Any) -> list[str]:
    """Generate the answer to each new row of ``task`` (rows hold the template's fields; no
    label or response is needed). The prompt is not shortened: keep rows within the
    backbone's context. ``generate_kwargs`` go to :meth:`PeftLitModule.generate`."""
    task.tokenizer = model.tokenizer
    prompts = [task.prompt(row) for row in rows]
    generate_kwargs.setdefault("max_new_tokens", model.hparams.max_new_tokens or
                               task.max_new_tokens)
    return model.generate(prompts, **generate_kwargs)
