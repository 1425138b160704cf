#!/usr/bin/env bash
# The scaled-down main grid whose report is committed in docs/results/: every regularizer x settings
# A-F, 1 seed, 150 generator updates on the 2-D ring of 8 Gaussians, 2 jobs at a time; then the
# report is copied to docs/results/. About 15-25 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP_DIR="${SWEEP_DIR:-multirun/grid_main/toy2d_steps150_seed0}"
# At 150 steps almost no run covers a mode yet, so the distance to the data ranks the methods
REPORT_ARGS="${REPORT_ARGS:---metric sliced_wasserstein}"
export SWEEP_DIR REPORT_ARGS
sweeps/run.sh main data=toy2d steps=150 seed=0 hydra/launcher=parallel callbacks=none trainer.enable_progress_bar=false
rm -rf docs/results/figures docs/results/*.csv docs/results/report.md
mkdir -p docs/results/figures
cp "${SWEEP_DIR}"/report/*.md "${SWEEP_DIR}"/report/*.csv docs/results/
cp "${SWEEP_DIR}"/report/figures/*.png docs/results/figures/
echo "copied the report to docs/results/"
