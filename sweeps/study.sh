#!/usr/bin/env bash
# The study of issue 15: every regularizer x Adam settings A-F x seeds 0-2 on one task, two jobs at a time,
# then the comparison report and the learning curves. Idempotent: rerunning the same command resumes a
# stopped study (jobs with a completed summary are skipped, interrupted ones resume from their checkpoint).
#
#   sweeps/study.sh toy|digits              # run (or resume) the study into multirun/study_<task>/
#   sweeps/study.sh toy|digits --publish    # also copy report, curves, summaries and overrides to docs/results/study_<task>/
#   sweeps/study.sh toy|digits --report     # only rebuild the report from what has run so far (then --publish if given)
#   sweeps/study.sh toy|digits --no-restore # run every job here, ignoring the published records (see below)
#   sweeps/study.sh toy|digits --status     # where it stands: jobs done per seed and setting, running, time left
#
# A study spans sessions on machines that keep nothing but the repository: before anything else, every job
# that docs/results/study_<task>/runs/ records as completed and that the study root has no summary of gets its
# published record (summary, overrides, config) copied back, so the run skips it and --publish keeps it. Jobs
# that were stopped unfinished have no committed checkpoint and run again from the start.
#
# Environment: PYTHON (default .venv/bin/python when present), N_JOBS (default 2), STUDY_ROOT (default multirun),
# SEEDS (default "0 1 2"), RESULTS_DIR (default docs/results). Layout: <STUDY_ROOT>/study_<task>/seed<k>/{single,pairs}/<job>/.
set -uo pipefail
cd "$(dirname "$0")/.."
task="${1:-}"
case "$task" in
  toy) metrics="sliced_wasserstein modes_covered high_quality_fraction" ;;   # the first ranks report/; the others get report/by_<metric>/
  digits) metrics="fid is_mean kid_mean" ;;
  *) echo "error: unknown task '${task}'; valid: toy, digits (usage: sweeps/study.sh toy|digits [--report] [--publish])" >&2; exit 2 ;;
esac
# the write-up's convergence figure: a few methods at setting C (report/curves_C/)
few="none,sn,sn_gram,bjorck,r2,wgan_gp,weight_clip,sn+r1"
shift
run=1; publish=0; restore=1; status=0
for arg in "$@"; do
  case "$arg" in
    --status) status=1 ;;
    --publish) publish=1 ;;
    --report) run=0 ;;
    --no-restore) restore=0 ;;
    *) echo "error: unknown option '${arg}'; valid: --report, --publish, --no-restore, --status" >&2; exit 2 ;;
  esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
root="${STUDY_ROOT:-multirun}/study_${task}"
published="${RESULTS_DIR:-docs/results}/study_${task}"
if [ "$status" -eq 1 ]; then  # reads only: safe beside a running study
  where="$root"; [ ! -d "$where" ] && [ -d "${published}/runs" ] && where="${published}/runs"  # nothing run here: the committed jobs
  # shellcheck disable=SC2086
  exec "$PYTHON" -m src.report.progress "$where" --experiment "study_${task}" "study_${task}_pairs" \
    --seeds ${SEEDS:-0 1 2} --n-jobs "${N_JOBS:-2}"
fi
mkdir -p "$root"
rc=0
if [ "$restore" -eq 1 ] && [ -d "${published}/runs" ]; then
  restored=0
  while IFS= read -r -d '' summary; do
    job="$(dirname "$summary")"; rel="${job#"${published}/runs/"}"
    [ -e "${root}/${rel}/summary.json" ] && continue             # what ran here wins
    grep -Eq '^  "status": "completed",?$' "$summary" || continue   # unfinished: runs again (src/summary.py writes indent=2)
    for f in summary.json .hydra/overrides.yaml .hydra/config.yaml; do
      [ -f "${job}/${f}" ] && install -D -m 644 "${job}/${f}" "${root}/${rel}/${f}"
    done
    sweep="$(dirname "$rel")"
    [ -f "${published}/runs/${sweep}/multirun.yaml" ] && [ ! -e "${root}/${sweep}/multirun.yaml" ] && \
      install -D -m 644 "${published}/runs/${sweep}/multirun.yaml" "${root}/${sweep}/multirun.yaml"
    restored=$((restored + 1))
  done < <(find "${published}/runs" -name summary.json -print0 | sort -z)
  if [ "$restored" -gt 0 ]; then
    [ -f "${published}/wall_time.log" ] && [ ! -e "${root}/wall_time.log" ] && cp "${published}/wall_time.log" "${root}/"
    echo "restored ${restored} completed job(s) from ${published}/runs (they will be skipped)"
  fi
fi
if [ "$run" -eq 1 ]; then
  # one seed at a time, its pairs right after its single methods: a stopped study holds whole seeds
  for seed in ${SEEDS:-0 1 2}; do
    for sweep in single pairs; do
      exp="study_${task}"; [ "$sweep" = pairs ] && exp="study_${task}_pairs"
      dir="${root}/seed${seed}/${sweep}"
      start=$(date +%s)
      echo "$(date -u +%FT%TZ) start ${exp} seed=${seed} -> ${dir}" | tee -a "${root}/wall_time.log"
      "$PYTHON" -m src.train -m "experiment=${exp}" "seed=${seed}" hydra/launcher=parallel \
        "hydra.launcher.n_jobs=${N_JOBS:-2}" "hydra.sweep.dir=${dir}" || rc=$?
      echo "$(date -u +%FT%TZ) end ${exp} seed=${seed}: $(( $(date +%s) - start )) s wall, exit ${rc}" | tee -a "${root}/wall_time.log"
      [ "$rc" -ne 0 ] && break 2
    done
  done
fi
dirs=()
for d in "${root}"/seed*/; do [ -d "$d" ] && dirs+=("${d%/}"); done
if [ "${#dirs[@]}" -eq 0 ]; then echo "error: nothing has run under ${root} yet" >&2; exit 2; fi
out="${root}/report"
if [ "$publish" -eq 1 ]; then
  # the committed copy: each job's summary, overrides and resolved config (no checkpoints), and the report
  # built from those copies alone, so `python -m src.report` on them rebuilds it exactly
  dest="$published"
  rm -rf "${dest}/runs" "${dest}/report"
  for d in "${dirs[@]}"; do
    for sweep in "$d"/*/; do
      sweep="${sweep%/}"; to="${dest}/runs/$(basename "$d")/$(basename "$sweep")"
      [ -f "$sweep/multirun.yaml" ] && install -D -m 644 "$sweep/multirun.yaml" "${to}/multirun.yaml"
      for job in "$sweep"/*/; do
        job=$(basename "$job")
        for f in summary.json .hydra/overrides.yaml .hydra/config.yaml; do
          [ -f "$sweep/$job/$f" ] && install -D -m 644 "$sweep/$job/$f" "${to}/${job}/$f"
        done
      done
    done
  done
  [ -f "${root}/wall_time.log" ] && cp "${root}/wall_time.log" "$dest/"
  dirs=(); for d in "${dest}"/runs/seed*/; do dirs+=("${d%/}"); done
  out="${dest}/report"
fi
rm -rf "$out"
first=1
for m in $metrics; do
  o="$out"; [ "$first" -eq 0 ] && o="${out}/by_${m}"
  "$PYTHON" -m src.report "${dirs[@]}" --out "$o" --metric "$m" > /dev/null || rc=$?
  "$PYTHON" -m src.analysis.learning_curves "${dirs[@]}" --metric "$m" --out "${out}/curves" > /dev/null || rc=$?
  [ "$first" -eq 1 ] && { "$PYTHON" -m src.analysis.learning_curves "${dirs[@]}" --metric "$m" --settings C \
    --methods "$few" --out "${out}/curves_C" > /dev/null || rc=$?; }
  first=0
done
echo "report: ${out}/report.md (learning curves: ${out}/curves/)"
exit "$rc"
