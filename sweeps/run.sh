#!/usr/bin/env bash
# One command from a grid to its comparison: the Hydra multirun of conf/experiment/grid_<grid>.yaml,
# then `python -m src.report` on its sweep dir (<sweep dir>/report/report.md, CSVs, figures/).
#
#   sweeps/run.sh <grid> [Hydra overrides ...]            # grid: main, loss, ndis, resnet, family, combos, ...
#   sweeps/run.sh main                                          # the paper's grid as configured
#   sweeps/run.sh main data=toy2d steps=300 seed=0 hydra/launcher=parallel   # scaled down, 2 jobs at a time
#   sweeps/run.sh --resume SWEEP_DIR <grid> [the same overrides]   # relaunch an interrupted sweep
#
# --resume reruns the same multirun into SWEEP_DIR with skip_completed=true: jobs whose summary says
# completed are skipped, interrupted or killed ones resume from their last checkpoint, missing ones run.
# Give the same grid and overrides as the first launch (job numbers follow them).
#
# Environment: PYTHON (default .venv/bin/python when present, else python), SWEEP_DIR (default
# multirun/grid_<grid>/<timestamp>), REPORT_ARGS (e.g. "--metric sliced_wasserstein").
# The report is written even when the sweep stops early (Ctrl-C, a crashed launcher): it lists
# what is missing. The exit status is the sweep's.
set -uo pipefail
cd "$(dirname "$0")/.."
resume=()
if [ "${1:-}" = "--resume" ]; then
  if [ -z "${2:-}" ] || [ ! -d "$2" ]; then
    echo "error: --resume needs the sweep dir of an earlier launch (got '${2:-}')" >&2; exit 2
  fi
  SWEEP_DIR="$2"; resume=("skip_completed=true"); shift 2
fi
grid="${1:-}"
if [ -z "$grid" ] || [ ! -f "conf/experiment/grid_${grid}.yaml" ]; then
  valid=$(find conf/experiment -name 'grid_*.yaml' -exec basename {} .yaml \; | sed 's/^grid_//' | sort | paste -sd, -)
  echo "error: unknown grid '${grid}'; valid: ${valid} (usage: sweeps/run.sh [--resume SWEEP_DIR] <grid> [overrides ...])" >&2
  exit 2
fi
shift
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
SWEEP_DIR="${SWEEP_DIR:-multirun/grid_${grid}/$(date +%Y-%m-%d_%H-%M-%S)}"
echo "sweep dir: ${SWEEP_DIR}"
rc=0
"$PYTHON" -m src.train -m "experiment=grid_${grid}" "hydra.sweep.dir=${SWEEP_DIR}" "${resume[@]}" "$@" || rc=$?
if [ -d "${SWEEP_DIR}" ]; then
  # shellcheck disable=SC2086  # REPORT_ARGS is a list of options
  "$PYTHON" -m src.report "${SWEEP_DIR}" ${REPORT_ARGS:-} || { r=$?; [ "$rc" -eq 0 ] && rc=$r; }
fi
exit "$rc"
