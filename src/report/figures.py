"""Figures of the comparison (matplotlib, PNG): scores per setting (SN paper Figs. 1-2) and time per
generator update (Fig. 10)."""
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .aggregate import DIRECTIONS, Group  # noqa: E402


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def _title(ax, *parts: str, fontsize: float = 9) -> None:
    """A title wrapped to the axes' width: with a wide legend beside it the axes of a two-setting sweep are
    narrower than one line of title, which the figure would otherwise clip."""
    fig = ax.figure
    width_in = ax.get_position().width * fig.get_figwidth()
    chars = max(24, int(width_in * 72 / (0.6 * fontsize)))  # ~0.6 em per character in the default sans font
    ax.set_title("\n".join(textwrap.fill(p, chars) for p in parts), fontsize=fontsize)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # "tight": the legend outside the axes is never cut off
    plt.close(fig)


def _colors(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def score_bars(g: Group, metric: str, path: Path) -> Path:
    """Grouped bars: one group per setting, one bar per method, error bars = std over seeds.

    A cell with runs but no score (all diverged or failed) gets an x on the axis, so a method that
    breaks down under a setting is visible rather than silently absent.
    """
    methods, settings = g.methods, g.settings
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 1.5 + 0.18 * len(methods) * len(settings))), 4.2))
    values = []
    for i, (method, color) in enumerate(zip(methods, _colors(len(methods)))):
        xs = np.arange(len(settings)) + (i - (len(methods) - 1) / 2) * width
        means, stds, crosses = [], [], []
        for x, s in zip(xs, settings):
            st = g.cells.get((method, s), {}).get(metric)
            if st is not None and st.n:
                means.append(st.mean)
                stds.append(np.nan if st.std is None else st.std)  # one seed: no error bar
            else:
                means.append(np.nan)
                stds.append(np.nan)
                if (method, s) in g.status:
                    crosses.append(x)
        values += [m for m in means if np.isfinite(m)]
        ax.bar(xs, means, width, yerr=stds, color=color, label=method, capsize=2, ecolor="0.3")
        if crosses:
            # at the bottom of the axes whatever the scale (x in data, y in axes coordinates)
            ax.plot(crosses, [0] * len(crosses), "x", color=color, markersize=7, mew=2, clip_on=False,
                    transform=ax.get_xaxis_transform())
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > 20:
        ax.set_yscale("log")  # one broken run would otherwise flatten every other bar
    ax.set_xticks(np.arange(len(settings)))
    ax.set_xticklabels(settings, rotation=0 if max(map(len, settings)) < 6 else 30, ha="center" if max(map(len, settings)) < 6 else "right")
    direction = g.direction if metric == g.metric else DIRECTIONS.get(metric)
    better = {"min": "lower is better", "max": "higher is better"}.get(direction, "")
    ax.set_ylabel(f"{metric}" + (f" ({better})" if better else ""))
    ax.set_xlabel("optimizer setting")
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()  # places the axes beside the legend; the title is wrapped to their width
    _title(ax, f"data={g.data}: {metric} per setting", "(mean ± std over seeds; x = no score: diverged/failed)")
    _save(fig, path)
    return path


def timing_bars(g: Group, path: Path) -> Path | None:
    """Seconds per generator update per method, one bar group per n_dis (it multiplies D's work)."""
    if not g.timing:
        return None
    n_dis_values = sorted({k[1] for k in g.timing}, key=lambda x: (x is None, x or 0))
    methods = [m for m in g.methods if any((m, n) in g.timing for n in n_dis_values)]
    width = 0.8 / max(1, len(n_dis_values))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(methods) * len(n_dis_values) + 1.5), 4.0))
    for j, (n, color) in enumerate(zip(n_dis_values, _colors(len(n_dis_values)))):
        xs = np.arange(len(methods)) + (j - (len(n_dis_values) - 1) / 2) * width
        st = [g.timing.get((m, n)) for m in methods]
        means = [s.mean if s else np.nan for s in st]
        stds = [s.std if s and s.std is not None else np.nan for s in st]
        ax.bar(xs, means, width, yerr=stds, color=color, label=f"n_dis={n}", capsize=2, ecolor="0.3")
    ax.set_xticks(np.arange(len(methods)))
    ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("seconds per generator update")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _title(ax, f"data={g.data}: wall time per generator update", "(mean ± std over runs)")
    _save(fig, path)
    return path


def write_figures(out: Path, groups: list[Group]) -> dict[str, list[Path]]:
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for g in groups:
        paths = [score_bars(g, m, folder / f"scores_{_safe(g.data)}_{_safe(m)}.png") for m in g.shown]
        t = timing_bars(g, folder / f"time_per_step_{_safe(g.data)}.png")
        made[g.data] = paths + ([t] if t else [])
    return made
