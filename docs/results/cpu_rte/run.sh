#!/usr/bin/env bash
# Issue 5's documented CPU run: PARADE, LoRA and IA3 on real RTE rows with SmolLM2-135M,
# 200 optimisation steps each (batch 4, bf16 autocast), dev every 50 steps (32 rows, greedy),
# then the best adapter on the full RTE test half (139 rows, beam 3). Run from the repo root.
# Usage: docs/results/cpu_rte/run.sh [method ...]   (default: parade lora ia3)
set -euo pipefail
export PARADE_DATA_DIR=${PARADE_DATA_DIR:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
methods=("$@"); [ ${#methods[@]} -gt 0 ] || methods=(parade lora ia3)
for method in "${methods[@]}"; do
  /usr/bin/time -v .venv/bin/parade fit --config configs/base.yaml --config configs/methods/$method.yaml \
    --config configs/tasks/rte.yaml --config configs/cpu_quick.yaml \
    --trainer.max_steps 200 --trainer.val_check_interval 50 \
    --data.init_args.max_test_examples null --model.num_beams 3 \
    --trainer.logger.init_args.save_dir runs/cpu_rte --trainer.logger.init_args.name $method \
    --trainer.logger.init_args.version 0 --trainer.enable_progress_bar false \
    > runs/cpu_rte_$method.log 2>&1
done
