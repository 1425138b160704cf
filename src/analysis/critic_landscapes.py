"""Critic landscapes on 2-D data: D's value over the plane with data and samples, one panel per regularizer.

    python -m src.analysis.critic_landscapes --out DIR [--steps 500] [--regularizers sn,wgan_gp,...] [OVERRIDES ...]

Trains one short toy run per regularizer in conf/regularizer/ (default: all of them; the default run
is ring8 / mlp, each regularizer with its own default loss) through src.train's own builders, then
evaluates the trained D (eval mode) on a grid over the plane. Extra arguments are Hydra overrides
for every run (e.g. data.variant=grid25 optim.n_dis=5).

Writes landscapes.png (D's value, data in black, samples in red; the colour scale is per panel,
since the regularizers' output ranges differ by orders of magnitude), gradient_fields.png
(|grad_x D| over the plane, log scale) and landscapes.csv (status, mode coverage, the value range
and gradient norms on the grid, at the data and at the samples). Run dirs go to DIR/runs/<name>.
"""
import argparse
import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from ..cli import HelpFormatter  # noqa: E402
from ._runs import available_regularizers, limit_threads, save_figure, train  # noqa: E402


def landscape(module, lim: float, n: int = 160):
    """D's value and |grad_x D| on an n x n grid over [-lim, lim]^2 (D in eval mode)."""
    from ..spectral.lipschitz import eval_mode

    xs = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2).to(module.device)
    with eval_mode(module.D), torch.enable_grad():
        x = grid.clone().requires_grad_(True)
        value = module.D(x)
        (g,) = torch.autograd.grad(value.sum(), x)
    return value.detach().view(n, n).cpu().numpy(), g.norm(dim=1).view(n, n).cpu().numpy()


def run(out: Path, names, steps: int, overrides=(), n_show: int = 1000, seed: int = 0) -> list:
    from ..spectral.lipschitz import input_gradient_norms

    out.mkdir(parents=True, exist_ok=True)
    rows, panels = [], []
    for name in names:
        res = train([f"regularizer={name}", f"steps={steps}", "logger=none", "callbacks=none", "samples.every=0",
                     "checkpoint.every=0", *overrides], out / "runs" / name)
        module, dm = res["module"], res["datamodule"]
        data = dm.data[:20000].cpu()
        lim = max(3.0, float(data.abs().max()) * 1.3)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n_show, module.z_dim, generator=gen)
        fake = module.generate(n_show, z=z)
        real = data[torch.randint(0, len(data), (n_show,), generator=gen)]
        row = {"regularizer": name, "loss": res["loss"], "status": res["status"], "steps": res["steps"],
               "seconds": round(res["seconds"], 1), **{k: v for k, v in res["metrics"].items() if isinstance(v, (int, float))}}
        panel = {"name": name, "loss": res["loss"], "status": res["status"], "real": real.numpy(), "lim": lim,
                 "fake": fake.numpy() if torch.isfinite(fake).all() else None, "metrics": res["metrics"]}
        if res["status"] == "completed":
            value, grad = landscape(module, lim)
            gd = input_gradient_norms(module.D, real.to(module.device))
            gf = input_gradient_norms(module.D, fake.to(module.device))
            row.update(d_min=float(value.min()), d_max=float(value.max()), grad_mean_grid=float(grad.mean()),
                       grad_max_grid=float(grad.max()), grad_mean_data=float(gd.mean()), grad_mean_samples=float(gf.mean()))
            panel.update(value=value, grad=grad)
        print(f"{name:12s} {res['status']:9s} {res['seconds']:.0f}s  "
              + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in ("regularizer", "status", "seconds")),
              flush=True)
        rows.append(row)
        panels.append(panel)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "landscapes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    plot(panels, out / "landscapes.png", "value")
    plot(panels, out / "gradient_fields.png", "grad")
    return rows


def plot(panels: list, path: Path, kind: str) -> None:
    ncol = min(5, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 3.2 * nrow), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        lim = p["lim"]
        title = f"{p['name']} ({p['loss']})"
        if kind in p:
            field = p[kind]
            if kind == "value":
                im = ax.imshow(field, origin="lower", extent=(-lim, lim, -lim, lim), cmap="RdBu_r", aspect="equal")
            else:
                im = ax.imshow(np.clip(field, 1e-8, None), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma",
                               norm=LogNorm(), aspect="equal")
            cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            cb.ax.tick_params(labelsize=6)
            m = p["metrics"]
            if "modes_covered" in m:
                title += f"\n{m['modes_covered']}/{m['modes_total']} modes, hq {m['high_quality_fraction']:.2f}"
        else:
            ax.text(0.5, 0.5, p["status"], transform=ax.transAxes, ha="center", va="center", fontsize=12)
        ax.scatter(p["real"][:, 0], p["real"][:, 1], s=1, c="k", alpha=0.4)
        if p["fake"] is not None:
            ax.scatter(p["fake"][:, 0], p["fake"][:, 1], s=1, c="tab:red", alpha=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    what = "D(x)" if kind == "value" else "|grad_x D(x)| (log scale)"
    fig.suptitle(f"{what} after toy training; data black, generated red", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the figures and the CSV")
    ap.add_argument("--steps", type=int, default=500, help="generator updates per run")
    ap.add_argument("--regularizers", default=None, help="comma-separated; default: every option in conf/regularizer/")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more oversubscribe a shared CPU)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides applied to every run")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    names = args.regularizers.split(",") if args.regularizers else available_regularizers()
    unknown = sorted(set(names) - set(available_regularizers()))
    if unknown:
        ap.error(f"unknown regularizers {unknown}; available: {available_regularizers()}")
    run(args.out, names, args.steps, args.overrides)
    print(f"wrote {args.out}/landscapes.png, gradient_fields.png, landscapes.csv")


if __name__ == "__main__":
    main()
