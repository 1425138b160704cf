"""Learning curves of a sweep, read back from its summaries alone (``metrics_history``: the scores taken
every ``metrics.every`` generator updates), to show that a study's length is on its plateau.

    python -m src.analysis.learning_curves SWEEP_DIR [...] --metric modes_covered --settings C \
        [--methods sn,wgan_gp,none] --out DIR

Writes ``learning_curves_<metric>.png`` (one panel per setting: mean over seeds, shaded min-max band),
``learning_curves_<metric>.csv`` (method, setting, step, n, mean, std, min, max) and
``plateau_<metric>.csv``: per method and setting, the final mean, the mean at 3/4 of training and
``settled_at``, the first evaluated step after which the mean curve stays within ``--tolerance`` of
its final value (a curve that settles early has plateaued; one that settles only at the end has not),
and the mean and range of the curve over its last quarter (from the evaluation nearest 3/4 of
training on): a score less tied to the last evaluation when the curve fluctuates.
"""
import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

LOWER_IS_BETTER = {"fid", "kid_mean", "sliced_wasserstein"}


def read_histories(dirs: list[Path]) -> list[dict]:
    """One record per completed run with a history: method, setting, seed, and the (step, value) curve."""
    runs = []
    for root in dirs:
        for path in sorted(root.rglob("summary.json")):
            try:
                s = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            history = s.get("metrics_history") or []
            if s.get("status") != "completed" or not history:
                continue
            runs.append({"method": s.get("method") or s.get("regularizer"), "setting": s.get("optim"),
                         "seed": s.get("seed"), "history": history, "path": str(path.parent)})
    return runs


def curves(runs: list[dict], metric: str) -> dict[tuple[str, str], dict[int, list[float]]]:
    """(method, setting) -> step -> the seeds' values at that step (non-finite values dropped)."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for h in r["history"]:
            v = h.get(metric)
            if h.get("step") is not None and isinstance(v, (int, float)) and math.isfinite(v):
                out[(r["method"], r["setting"])][int(h["step"])].append(float(v))
    return out


def settled_at(steps: list[int], means: list[float], tolerance: float) -> int:
    """The first step after which every mean stays within `tolerance` of the final mean."""
    final, at = means[-1], steps[-1]
    for step, m in zip(reversed(steps), reversed(means)):
        if abs(m - final) > tolerance:
            break
        at = step
    return at


def summarize(table: dict, tolerance: float) -> tuple[list[dict], list[dict]]:
    rows, plateau = [], []
    for (method, setting), by_step in sorted(table.items()):
        steps = sorted(by_step)
        means = [float(np.mean(by_step[s])) for s in steps]
        for s, m in zip(steps, means):
            v = by_step[s]
            rows.append({"method": method, "setting": setting, "step": s, "n": len(v), "mean": m,
                         "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "min": min(v), "max": max(v)})
        three_quarters = min(steps, key=lambda s: abs(s - 0.75 * steps[-1]))
        tail = [m for st, m in zip(steps, means) if st >= three_quarters]
        plateau.append({"method": method, "setting": setting, "final_step": steps[-1], "final_mean": means[-1],
                        "mean_at_3/4": means[steps.index(three_quarters)], "step_3/4": three_quarters,
                        "last_quarter_mean": float(np.mean(tail)), "last_quarter_range": float(max(tail) - min(tail)),
                        "settled_at": settled_at(steps, means, tolerance), "tolerance": tolerance,
                        "seeds": len(by_step[steps[-1]])})
    return rows, plateau


def plot(table: dict, metric: str, settings: list[str], methods: list[str] | None, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.4), squeeze=False, sharey=True)
    names = sorted({m for m, _ in table} if methods is None else methods)
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 2)))
    for ax, setting in zip(axes[0], settings):
        for color, method in zip(colors, names):
            by_step = table.get((method, setting))
            if not by_step:
                continue
            steps = sorted(by_step)
            mean = [np.mean(by_step[s]) for s in steps]
            ax.plot(steps, mean, color=color, label=method, lw=1.4)
            ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                            color=color, alpha=0.15, lw=0)
        ax.set_title(f"setting {setting}", fontsize=9)
        ax.set_xlabel("generator updates")
        ax.grid(alpha=0.3)
    values = [v for by_step in table.values() for vs in by_step.values() for v in vs]
    if metric in LOWER_IS_BETTER and min(values) > 0 and max(values) > 20 * min(values):
        axes[0][0].set_yscale("log")  # distances spanning decades (a diverging method) would flatten the rest
    axes[0][0].set_ylabel(f"{metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle("learning curves: mean over seeds, band = min..max", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.analysis.learning_curves", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, help="sweep dirs (or any dirs above their summary.json files)")
    p.add_argument("--metric", required=True, help="a key of the runs' metrics_history, e.g. modes_covered, fid")
    p.add_argument("--settings", default=None, help="comma-separated settings (optim names) to plot; default: all")
    p.add_argument("--methods", default=None, help="comma-separated methods to plot (e.g. sn,sn+r1); default: all")
    p.add_argument("--tolerance", type=float, default=None,
                   help="how close to its final value a settled curve stays (default: 5%% of the metric's range)")
    p.add_argument("--out", type=Path, required=True, help="output dir")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        p.error(f"not a directory: {', '.join(missing)}")
    runs = read_histories(args.dirs)
    table = curves(runs, args.metric)
    if not table:
        known = sorted({k for r in runs for h in r["history"] for k in h if k != "step"})
        p.error(f"no completed run has a history of {args.metric!r}"
                + (f"; metrics in the histories: {', '.join(known)}" if known else
                   " (no completed run has metrics_history: train with metrics.every > 0)"))
    methods = args.methods.split(",") if args.methods else None
    if methods:
        table = {k: v for k, v in table.items() if k[0] in methods}
    settings = args.settings.split(",") if args.settings else sorted({s for _, s in table})
    table = {k: v for k, v in table.items() if k[1] in settings}
    if not table:
        p.error(f"no run matches --methods {args.methods} --settings {args.settings}")
    values = [v for by_step in table.values() for vs in by_step.values() for v in vs]
    tolerance = args.tolerance if args.tolerance is not None else 0.05 * ((max(values) - min(values)) or 1.0)
    rows, plateau = summarize(table, tolerance)
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / f"learning_curves_{args.metric}.csv", rows)
    _write(args.out / f"plateau_{args.metric}.csv", plateau)
    plot(table, args.metric, settings, methods, args.out / f"learning_curves_{args.metric}.png")
    for r in plateau:
        print(f"{r['method']:>14} {r['setting']}: final {r['final_mean']:.4g} at {r['final_step']}, "
              f"{r['mean_at_3/4']:.4g} at {r['step_3/4']}, settled (±{tolerance:.3g}) from {r['settled_at']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
