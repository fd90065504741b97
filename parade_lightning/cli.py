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
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from datamodules import TaskDataModule
from methods.input_errors import InputError
from methods.registry import canonical_path, method_class, method_from_config
from parade_lightning import cli_checks, run_report
from parade_lightning.checkpoint_io import AtomicCheckpointIO
from parade_lightning.config_files import config_paths, yaml_problem
from parade_lightning.explain import main as explain_main
from parade_lightning.export_command import main as export_main
from parade_lightning.lit_module import PeftLitModule
from parade_lightning.quiet import quiet_third_party
from parade_lightning.resume_check import NothingToResumeError, check_resume
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
        parser.add_argument(
            "--allow_fresh_start", type=bool, default=False,
            help="fit --ckpt_path last: start a new run when no run folder has a last.ckpt "
                 "(without it, having nothing to resume is an error)",
        )

    def _add_subcommands(self, parser, **kwargs) -> None:
        """Lightning's subcommands, and ``sweep`` listed beside them (``main`` runs it)."""
        super()._add_subcommands(parser, **kwargs)
        parser._subcommands_action.add_subcommand(
            "sweep", ArgumentParser(description=run_report.SWEEP_HELP),
            help=run_report.SWEEP_HELP)

    def parse_arguments(self, parser, args) -> None:
        """Check every ``--config`` file's YAML (file and line in the error) and the requested
        ``model.method`` (the file searched) first, then parse as LightningCLI does."""
        argv = sys.argv[1:] if args is None else list(args)
        for path in config_paths(argv):
            problem = yaml_problem(path)
            if problem:
                parser.error(problem)
        problem = cli_checks.method_problem(argv)
        if problem:
            parser.error(problem)
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        """Resolve ``model.method`` through the one method resolver
        (:func:`methods.registry.method_class`) and check its options."""
        config = self.config.get(self.subcommand)
        method = config.get("model", {}).get("method") if config is not None else None
        if method is not None and getattr(method, "class_path", None):
            method.class_path = canonical_path(method_class(method.class_path))
            # build it once here: a bad option is the method's own one-line error, not
            # jsonargparse's union-type report around it
            init = method.get("init_args")
            method_from_config({"class_path": method.class_path,
                                "init_args": init.as_dict() if init is not None else {}})
        run_report.share_generation_length(config if self.subcommand else self.config)
        if not self.subcommand:  # with a subcommand, `_parse_ckpt_path` named it already
            self._default_logger_name(self.config)

    def _default_logger_name(self, config) -> None:
        """A TensorBoard logger with ``name: null`` logs to ``<save_dir>/<method>/<task>``."""
        logger = config.trainer.get("logger") if config is not None else None
        init = getattr(logger, "init_args", None) if logger not in (None, True, False) else None
        if init is not None and "name" in init and init.get("name") is None and str(
                getattr(logger, "class_path", "")).endswith("TensorBoardLogger"):
            init.name = run_report.default_logger_name(config.model.get("method"),
                                                       config.get("data"))

    def _parse_ckpt_path(self) -> None:
        """Check the command against its checkpoint (replaces LightningCLI's version).

        Lightning's hook merges the checkpoint's hyper-parameters into the parsed config,
        silently replacing what the command says. Here ``--ckpt_path last`` is resolved and a
        command that contradicts the checkpoint is one error listing every difference
        (:mod:`parade_lightning.resume_check`), before anything is built or written.
        """
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else None
        if config is None:
            return
        self._default_logger_name(config)  # before `last` is looked up under it
        resume = self._resume_last_version(subcommand, config)
        ckpt_path = config.get("ckpt_path")
        if resume is None and ckpt_path not in (None, "last", "best", "hpc", "registry"):
            resume = Path(ckpt_path)
        if resume is not None:
            check_resume(config, resume, training=subcommand == "fit")

    def instantiate_trainer(self, **kwargs):
        """The Trainer, with atomic, ``weights_only`` checkpoint files
        (:class:`~parade_lightning.checkpoint_io.AtomicCheckpointIO`) unless a custom
        checkpoint IO plugin was configured."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _resume_last_version(self, subcommand: str, config) -> Path | None:
        """``fit --ckpt_path last``: continue in the newest run folder that has a last.ckpt
        (returned). Nothing to resume is an error unless ``--allow_fresh_start``.

        Lightning resolves ``last`` inside the *current* logger version, and every new
        invocation would otherwise open a fresh ``version_N``; pointing the logger at the newest
        version with ``checkpoints/last.ckpt`` makes the documented resume command work.
        """
        if subcommand != "fit" or config.get("ckpt_path") != "last":
            return None
        logger = config.trainer.get("logger")
        init = getattr(logger, "init_args", None) if logger not in (None, True, False) else None
        if init is None or not str(getattr(logger, "class_path", "")).endswith(
                "TensorBoardLogger"):
            return None
        root = Path(init.save_dir) / (init.get("name") or "lightning_logs")
        if init.get("version") is not None:
            found = [root / f"version_{init.version}" if isinstance(init.version, int)
                     else root / str(init.version)]
        else:
            found = [root / f"version_{n}" for n in sorted(
                int(p.name.removeprefix("version_")) for p in root.glob("version_*")
                if p.name.removeprefix("version_").isdigit())]
        found = [p for p in found if (p / "checkpoints/last.ckpt").is_file()]
        if not found:
            if config.get("allow_fresh_start"):
                rank_zero_info(f"--ckpt_path last: nothing to resume under {root}; starting fresh")
                config.ckpt_path = None
                return None
            raise NothingToResumeError(
                f"--ckpt_path last: nothing to resume: no {root}/version_*/checkpoints/last.ckpt "
                "(logger save_dir/name/version as configured). Start a new run without "
                "--ckpt_path, or pass --allow_fresh_start true to start one when there is "
                "nothing to resume."
            )
        if init.get("version") is None:
            init.version = int(found[-1].name.removeprefix("version_"))
        rank_zero_info(f"resuming from {found[-1]}/checkpoints/last.ckpt")
        return found[-1] / "checkpoints" / "last.ckpt"

    def before_fit(self) -> None:
        """Warn when dev will never be evaluated; with ``validate_before_fit``, evaluate dev
        once before training."""
        for problem in (run_report.validation_never_runs(self.trainer),
                        run_report.slow_cpu_bf16(self.trainer, self.model)):
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
    try:
        build_cli(args)  # None: LightningCLI reads sys.argv itself (and does not warn about both)
    except InputError as error:  # says what is wrong and what to do: no traceback
        raise SystemExit(f"error: {error}") from None


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
