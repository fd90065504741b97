"""The ``parade`` command: a LightningCLI over :class:`PeftLitModule` and the task datamodules.

    parade fit --config configs/parade_rte.yaml
    parade fit --config configs/methods/lora.yaml --config configs/tasks/sst2.yaml
    parade fit --model.method Parade4 --print_config
    parade sweep run --config sweeps/cpu_smollm2.yaml     (see parade_lightning.sweep)
    parade explain --ckpt_path best.ckpt --prompt "…"     (see parade_lightning.explain)
    parade export --ckpt_path best.ckpt --out adapters/x  (see parade_lightning.export_command)

Methods and datamodules are chosen by ``class_path`` (``methods.Parade`` or just ``Parade``);
``model.backbone`` is linked into the datamodule so both use the same tokenizer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from datamodules import TaskDataModule
from methods.registry import canonical_path, method_class
from parade_lightning import cli_checks, run_report
from parade_lightning.explain import main as explain_main
from parade_lightning.export_command import main as export_main
from parade_lightning.lit_module import PeftLitModule
from parade_lightning.quiet import quiet_third_party
from parade_lightning.sweep.commands import main as sweep_main


class ParadeCLI(LightningCLI):
    """LightningCLI with the backbone linked from the model into the data, and the generation
    length set once for both (one setting each; Lightning refuses module and datamodule
    hparams that disagree): ``model.max_new_tokens`` when given, else the data's own
    ``max_new_tokens`` (a YAML task's declaration), else the task's default."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.backbone", "data.init_args.backbone")
        parser.add_argument(
            "--test_after_fit", type=bool, default=False,
            help="fit only: afterwards run `test` with the best checkpoint (else the last "
                 "weights), writing predictions.jsonl and metrics.json (appendix E protocol)",
        )
        parser.add_argument(
            "--validate_before_fit", type=bool, default=False,
            help="fit only: evaluate dev once at step 0, before training (the zero-shot dev "
                 "metric the run summary shows); skipped when resuming with --ckpt_path",
        )

    def _add_subcommands(self, parser, **kwargs) -> None:
        """Lightning's subcommands, and ``sweep`` listed beside them (``main`` runs it)."""
        super()._add_subcommands(parser, **kwargs)
        parser._subcommands_action.add_subcommand(
            "sweep", ArgumentParser(description=run_report.SWEEP_HELP),
            help=run_report.SWEEP_HELP)

    def parse_arguments(self, parser, args) -> None:
        """Check the requested ``model.method`` first (clear message naming the file searched),
        then parse as LightningCLI does."""
        problem = cli_checks.method_problem(sys.argv[1:] if args is None else list(args))
        if problem:
            parser.error(problem)
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        """Resolve ``model.method`` through the one method resolver
        (:func:`methods.registry.method_class`), then handle ``--ckpt_path last``."""
        config = self.config.get(self.subcommand)
        method = config.get("model", {}).get("method") if config is not None else None
        if method is not None and getattr(method, "class_path", None):
            method.class_path = canonical_path(method_class(method.class_path))
        run_report.share_generation_length(config if self.subcommand else self.config)
        self._default_logger_name(config)
        self._resume_last_version(config)

    def _default_logger_name(self, config) -> None:
        """A TensorBoard logger with ``name: null`` logs to ``<save_dir>/<method>/<task>``."""
        logger = config.trainer.get("logger") if config is not None else None
        init = getattr(logger, "init_args", None) if logger not in (None, True, False) else None
        if init is not None and "name" in init and init.get("name") is None and str(
                getattr(logger, "class_path", "")).endswith("TensorBoardLogger"):
            init.name = run_report.default_logger_name(config.model.get("method"),
                                                       config.get("data"))

    def _resume_last_version(self, config) -> None:
        """``fit --ckpt_path last``: continue in the newest run folder that has a last.ckpt.

        Lightning resolves ``last`` inside the *current* logger version, and every new
        invocation would otherwise open a fresh ``version_N``; pointing the logger at the newest
        version with ``checkpoints/last.ckpt`` makes the documented resume command work.
        """
        if self.subcommand != "fit" or config is None or config.get("ckpt_path") != "last":
            return
        logger = config.trainer.get("logger")
        init = getattr(logger, "init_args", None) if logger not in (None, True, False) else None
        if init is None or not str(getattr(logger, "class_path", "")).endswith(
            "TensorBoardLogger") or init.get("version") is not None:
            return
        root = Path(init.save_dir) / (init.get("name") or "lightning_logs")
        versions = sorted(
            int(p.name.removeprefix("version_")) for p in root.glob("version_*")
            if p.name.removeprefix("version_").isdigit() and (p / "checkpoints/last.ckpt").is_file()
        )
        if versions:
            init.version = versions[-1]
            rank_zero_info(f"resuming from {root}/version_{versions[-1]}/checkpoints/last.ckpt")

    def before_fit(self) -> None:
        """Warn when dev will never be evaluated; with ``validate_before_fit``, evaluate dev
        once before training."""
        problem = run_report.validation_never_runs(self.trainer)
        if problem:
            rank_zero_warn(problem)
        config = self.config[self.subcommand]
        if config.get("validate_before_fit") and not config.get("ckpt_path"):
            self.trainer.validate(self.model, datamodule=self.datamodule)

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit"):
            self._test_after_fit()
        self._summary("fit")

    def after_test(self) -> None:
        self._summary("test")

    def _summary(self, stage: str) -> None:
        summary = run_report.summarise(self.trainer, self.model, stage)
        self.run_summary = summary
        rank_zero_info(run_report.format_summary(summary))

    def _test_after_fit(self) -> None:
        if "test" not in getattr(self.datamodule, "available_splits", lambda: ("test",))():
            rank_zero_info(f"test_after_fit: {type(self.datamodule).__name__} has no test split")
            return
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``parade`` console script.

    ``parade sweep …`` goes to :mod:`parade_lightning.sweep.commands` (grids of ordinary runs);
    everything else is the LightningCLI (``fit``, ``validate``, ``test``, ``predict``).
    """
    argv = sys.argv[1:] if args is None else list(args)
    quiet_third_party()
    if argv and argv[0] == "sweep":
        sweep_main(argv[1:])
        return
    if argv and argv[0] == "explain":  # pooler attention maps (parade_lightning.explain)
        explain_main(argv[1:])
        return
    if argv and argv[0] == "export":  # parade_lightning.export_command
        export_main(argv[1:])
        return
    build_cli(args)  # None: LightningCLI reads sys.argv itself (and does not warn about both)


def build_cli(args: list[str] | None = None, run: bool = True) -> ParadeCLI:
    """Parse ``args`` (default ``sys.argv``) and, with ``run``, execute the subcommand."""
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
