"""Sweeps: grids of ordinary ``parade fit`` runs, resumable, with reports in the paper's layouts.

    parade sweep plan    --config sweeps/cpu_smollm2.yaml    # list the runs
    parade sweep run     --config sweeps/cpu_smollm2.yaml    # run what is not done yet
    parade sweep run     --config sweeps/table1.yaml --backend slurm   # SLURM job array
    parade sweep report  --config sweeps/cpu_smollm2.yaml    # tables + figure

Modules: :mod:`~parade_lightning.sweep.sweep_file` (the sweep file), :mod:`~.plan` (runs and
their commands), :mod:`~.budget_match` (budget matching), :mod:`~.state` and :mod:`~.runner`
(resumable execution), :mod:`~.report` and :mod:`~.render` (tables, figure), :mod:`~.slurm`
(job arrays), :mod:`~.study`, :mod:`~.study_report`, :mod:`~.study_figures` and
:mod:`~.study_steps` (a study: rates chosen on dev, then seeds; its reports; the flattening
check), :mod:`~.commands` (the ``parade sweep`` command line). See ``docs/sweeps.md``.
"""
