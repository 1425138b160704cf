"""Rerun one job of a sweep or study from its record and check that it reproduces its scores.

    python sweeps/rerun_job.py RUN_DIR [--out DIR]

Reads RUN_DIR/.hydra/overrides.yaml (the job's command line, as Hydra recorded it), runs
``python -m src.train <those overrides>`` into a fresh directory (default: a temporary one), and
compares the new summary.json with RUN_DIR's: the final scores (``metrics``) and the learning curve
(``metrics_history``) must be equal, value for value. Prints what differs; exit 0 when identical,
1 when not, 2 when the record is incomplete or the rerun fails. Timing is not compared.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def differences(old: dict, new: dict) -> list[str]:
    out = []
    for key in ("status", "steps", "metrics", "metrics_history"):
        if old.get(key) != new.get(key):
            out.append(f"{key}: recorded {json.dumps(old.get(key))[:300]} vs rerun {json.dumps(new.get(key))[:300]}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python sweeps/rerun_job.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a job's run dir (holding summary.json and .hydra/overrides.yaml)")
    p.add_argument("--out", type=Path, default=None, help="where the rerun writes (default: a temporary dir)")
    args = p.parse_args(argv)
    overrides_file, summary_file = args.run_dir / ".hydra" / "overrides.yaml", args.run_dir / "summary.json"
    for f in (overrides_file, summary_file):
        if not f.is_file():
            print(f"error: {f} is missing; a job's run dir holds summary.json and .hydra/overrides.yaml", file=sys.stderr)
            return 2
    old = json.loads(summary_file.read_text())
    if old.get("status") != "completed":
        print(f"error: {args.run_dir} did not complete (status {old.get('status')!r}); only completed jobs have scores to reproduce",
              file=sys.stderr)
        return 2
    # the rerun must train again, not find the study's completed summary or resume from a checkpoint
    overrides = [o for o in yaml.safe_load(overrides_file.read_text()) if not o.startswith(("hydra.", "skip_completed="))]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "rerun"
        if out.exists() and any(out.iterdir()):
            print(f"error: --out {out} is not empty; give a new directory", file=sys.stderr)
            return 2
        cmd = [sys.executable, "-m", "src.train", *overrides, "skip_completed=false", f"hydra.run.dir={out}"]
        print("rerunning:", " ".join(cmd[1:]), flush=True)
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0 or not (out / "summary.json").is_file():
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"error: the rerun failed (exit {proc.returncode}): {tail}", file=sys.stderr)
            return 2
        diff = differences(old, json.loads((out / "summary.json").read_text()))
    if diff:
        print("NOT reproduced:\n  " + "\n  ".join(diff))
        return 1
    print(f"reproduced: metrics and the {len(old.get('metrics_history') or [])}-point learning curve are identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
