"""Command line of the report (see the package docstring)."""
import argparse
import shlex
import sys
from pathlib import Path

from . import build_report
from .aggregate import parse_metric


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.report",
                                description="Comparison table, CSVs and figures from the summary.json files of one or more sweeps.")
    p.add_argument("dirs", nargs="+", type=Path, help="multirun (sweep) dirs, run dirs, or any dir above them")
    p.add_argument("--out", type=Path, default=None, help="output dir (default: <first dir>/report)")
    p.add_argument("--metric", default="auto",
                   help="primary metric for the best setting: auto (fid, else is_mean, else modes_covered, else "
                        "sliced_wasserstein), a known metric, or NAME:min / NAME:max")
    args = p.parse_args(argv)
    try:
        parse_metric(args.metric)
    except ValueError as exc:
        p.error(str(exc))
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        p.error(f"not a directory: {', '.join(map(str, missing))}")
    argv = sys.argv[1:] if argv is None else argv
    result = build_report(args.dirs, args.out, args.metric, command="python -m src.report " + shlex.join(map(str, argv)))
    coll = result["collection"]
    counts = {}
    for r in coll.runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    if not coll.runs:
        print(f"warning: no summary.json or job dir found under {', '.join(map(str, args.dirs))}", file=sys.stderr)
    detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{len(coll.runs)} runs" + (f" ({detail})" if detail else ""))
    print(f"report: {result['markdown']}")
    print(f"figures: {result['out'] / 'figures'} ({len(result['figures'])} PNG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
