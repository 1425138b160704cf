"""Does power iteration converge to a convolution's operator norm? Reshaped vs conv-true, per iteration.

    python -m src.analysis.power_iteration_convergence --out DIR [--sizes 64 32] [--seeds 3] [--iters 300]

Random kernels (N(0, 1), rescaled so that |W_mat|_2 = 1, the state SN leaves a layer in, so the exact
norm reads directly as "how far a reshaped-normalized layer is from 1") in three geometries of the
SN-GAN CNN: 3x3 stride 1 with circular padding (exact norm: FFT, Sedghi et al.), 3x3 stride 1 and
4x4 stride 2 with zero padding (exact norm: Lanczos to 1e-9, checked against the rigorous FFT torus
bound). For each, both estimates from the same random start, per iteration:

* reshaped (Miyato): u^T W_mat v, which converges to |W_mat|_2, not to the operator norm;
* conv-true: |conv(v)| with v <- conv^T conv v / |.|, which converges to the operator norm.

Writes convergence.csv (every iteration), summary.csv (per layer and seed) and convergence.png.
"""
import argparse
import csv
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ..spectral.exact import conv_norm_bound_fft, conv_norm_fft  # noqa: E402
from ..spectral.power_iteration import LayerOperator, operator_norm, power_iteration_trace, reshaped_power_iteration_trace  # noqa: E402
from ..cli import HelpFormatter  # noqa: E402
from ._runs import limit_threads, save_figure  # noqa: E402

CONFIGS = [  # name, c_in, c_out, kernel, stride, padding, padding_mode
    ("3x3 s1 circular", 64, 64, 3, 1, 1, "circular"),
    ("3x3 s1 zero-pad", 64, 64, 3, 1, 1, "zeros"),
    ("4x4 s2 zero-pad", 64, 128, 4, 2, 1, "zeros"),
]
REPORT_AT = (1, 2, 5, 10, 30, 100)


def make_layer(c_in, c_out, k, stride, padding, mode, seed) -> nn.Conv2d:
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Conv2d(c_in, c_out, k, stride, padding, bias=False, padding_mode=mode).double()
    with torch.no_grad():
        w = torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64)
        layer.weight.copy_(w / torch.linalg.matrix_norm(w.flatten(1), 2))
    return layer


def exact_norm(layer: nn.Conv2d, shape) -> tuple:
    """(exact norm, how it was obtained)."""
    if layer.padding_mode == "circular" and tuple(layer.stride) == (1, 1):
        return conv_norm_fft(layer.weight.detach(), shape[1:]), "fft"
    return operator_norm(LayerOperator(layer, shape), tol=1e-9), "lanczos"


def run(out: Path, sizes=(64, 32), seeds: int = 3, iters: int = 300, channels: int | None = None) -> list:
    out.mkdir(parents=True, exist_ok=True)
    summary, curves = [], {}
    with open(out / "convergence.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["size", "layer", "seed", "iteration", "method", "estimate", "exact", "abs_error"])
        for n in sizes:
            for name, c_in, c_out, k, s, p, mode in CONFIGS:
                if channels:
                    c_in, c_out = channels, channels * c_out // c_in
                for seed in range(seeds):
                    t0 = time.perf_counter()
                    layer = make_layer(c_in, c_out, k, s, p, mode, seed)
                    shape = (c_in, n, n)
                    exact, how = exact_norm(layer, shape)
                    bound = conv_norm_bound_fft(layer, shape)
                    op = LayerOperator(layer, shape)
                    gen = torch.Generator().manual_seed(1000 + seed)
                    conv = power_iteration_trace(op, iters, generator=gen)
                    reshaped = reshaped_power_iteration_trace(layer.weight, iters, generator=gen)
                    for method, trace in (("conv-true", conv), ("reshaped", reshaped)):
                        err = (trace - exact).abs()
                        curves.setdefault((n, name, method), []).append(err)
                        for i, (e, a) in enumerate(zip(trace.tolist(), err.tolist()), 1):
                            writer.writerow([n, name, seed, i, method, f"{e:.10g}", f"{exact:.10g}", f"{a:.4g}"])
                    row = {"size": n, "layer": name, "c_in": c_in, "c_out": c_out, "seed": seed, "exact_norm": exact,
                           "exact_by": how, "fft_torus_bound": bound, "reshaped_norm": 1.0,
                           "ratio_true_to_reshaped": exact, "reshaped_final_abs_error": float((reshaped[-1] - exact).abs())}
                    for t in REPORT_AT + (iters,):
                        if t <= iters:
                            row[f"conv_abs_error_at_{t}"] = float((conv[t - 1] - exact).abs())
                    first = next((i + 1 for i, e in enumerate((conv - exact).abs() / exact) if e < 1e-3), None)
                    row["conv_iters_to_rel_1e-3"] = first
                    row["seconds"] = time.perf_counter() - t0
                    summary.append(row)
                    print(f"n={n} {name} seed={seed}: exact {exact:.5f} ({how}; FFT bound {bound:.5f}), reshaped -> 1, "
                          f"conv-true error {row['conv_abs_error_at_1']:.2e} (1 it) {row[f'conv_abs_error_at_{iters}']:.2e} ({iters} its)", flush=True)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    plot(curves, sizes, out / "convergence.png", iters)
    return summary


def plot(curves: dict, sizes, path: Path, iters: int) -> None:
    names = [c[0] for c in CONFIGS]
    fig, axes = plt.subplots(len(sizes), len(names), figsize=(4.2 * len(names), 3.2 * len(sizes)), squeeze=False, sharey=True)
    it = torch.arange(1, iters + 1)
    for r, n in enumerate(sizes):
        for c, name in enumerate(names):
            ax = axes[r][c]
            for method, color in (("reshaped", "tab:red"), ("conv-true", "tab:blue")):
                for i, err in enumerate(curves.get((n, name, method), [])):
                    ax.plot(it, err.clamp_min(1e-12), color=color, lw=1, alpha=0.8, label=method if i == 0 else None)
            ax.set_yscale("log")
            ax.set_xscale("log")
            ax.set_title(f"{name}, {n}x{n} input", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            if r == len(sizes) - 1:
                ax.set_xlabel("power iterations")
            if c == 0:
                ax.set_ylabel("|estimate - exact operator norm|")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Power iteration on random convolutions with |W_mat| = 1 (one line per seed)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the figure and the CSVs")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 32], help="input image sizes of the convolutions")
    ap.add_argument("--seeds", type=int, default=3, help="random convolutions per size")
    ap.add_argument("--iters", type=int, default=300, help="power iterations traced per estimate")
    ap.add_argument("--channels", type=int, default=None, help="c_in (c_out scales with it); default: the CNN's 64")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more oversubscribe a shared CPU)")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    run(args.out, args.sizes, args.seeds, args.iters, args.channels)
    print(f"wrote {args.out}/convergence.png, convergence.csv, summary.csv")


if __name__ == "__main__":
    main()
