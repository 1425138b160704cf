#!/usr/bin/env bash
# One command from a grid to its comparison: the Hydra multirun of conf/experiment/grid_<grid>.yaml,
# then `python -m src.report` on its sweep dir (<sweep dir>/report/report.md, CSVs, figures/).
#
#   sweeps/run.sh <main|loss|ndis|resnet> [Hydra overrides ...]
#   sweeps/run.sh main                                          # the paper's grid as configured
#   sweeps/run.sh main data=toy2d steps=300 seed=0 hydra/launcher=parallel   # scaled down, 2 jobs at a time
#
# Environment: PYTHON (default .venv/bin/python when present, else python), SWEEP_DIR (default
# multirun/grid_<grid>/<timestamp>), REPORT_ARGS (e.g. "--metric sliced_wasserstein").
# The report is written even when the sweep stops early (Ctrl-C, a crashed launcher): it lists
# what is missing. The exit status is the sweep's.
set -uo pipefail
cd "$(dirname "$0")/.."
grid="${1:-}"
case "$grid" in
  main|loss|ndis|resnet) shift ;;
  *) echo "usage: sweeps/run.sh <main|loss|ndis|resnet> [Hydra overrides ...]" >&2; exit 2 ;;
esac
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
SWEEP_DIR="${SWEEP_DIR:-multirun/grid_${grid}/$(date +%Y-%m-%d_%H-%M-%S)}"
echo "sweep dir: ${SWEEP_DIR}"
rc=0
"$PYTHON" -m src.train -m "experiment=grid_${grid}" "hydra.sweep.dir=${SWEEP_DIR}" "$@" || rc=$?
if [ -d "${SWEEP_DIR}" ]; then
  # shellcheck disable=SC2086  # REPORT_ARGS is a list of options
  "$PYTHON" -m src.report "${SWEEP_DIR}" ${REPORT_ARGS:-} || { r=$?; [ "$rc" -eq 0 ] && rc=$r; }
fi
exit "$rc"
