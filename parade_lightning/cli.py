"""The ``parade`` command: a LightningCLI over :class:`PeftLitModule` and the task datamodules.

    parade fit --config configs/parade_rte.yaml
    parade fit --config configs/methods/lora.yaml --config configs/tasks/sst2.yaml
    parade fit --model.method Parade4 --print_config

Methods and datamodules are chosen by ``class_path`` (``methods.Parade`` or just ``Parade``);
``model.backbone`` is linked into the datamodule so both use the same tokenizer.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

import methods  # noqa: F401  (registers the built-in methods for short class names)
from datamodules import TaskDataModule
from parade_lightning.lit_module import PeftLitModule


class ParadeCLI(LightningCLI):
    """LightningCLI with the backbone linked from the model into the data."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.backbone", "data.init_args.backbone")


def main(args: list[str] | None = None, run: bool = True) -> ParadeCLI:
    """Entry point of the ``parade`` console script."""
    return ParadeCLI(
        PeftLitModule,
        TaskDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()
