"""Spectra of D during training, compared across regularizers (the seeds' training-dependent claims).

    python -m src.analysis.training_spectra --out DIR [--regularizers sn,sn_conv,weight_clip,weight_norm,wgan_gp]
        [--steps 500] [--every 25] [--spectrum-every 250] [OVERRIDES ...]

Trains one run per regularizer (in this process, src.train's builders, the spectral monitor on at
the given frequency; OVERRIDES go to every run, e.g. data=image_folder data.root=/tmp/cifar/subset
or data=digits) and compares:

* sigma_true.png: every layer's operator norm as applied (warm-started conv-true power iteration)
  over training, one panel per regularizer: do reshaped-normalized layers stay at 1?
* rank_deficiency.png: the final sorted singular values of every layer's reshaped matrix,
  normalized by the largest, one line per regularizer (SN paper Fig. 3 style);
* grad_norms.png: mean |grad_x D| at real and interpolated points over training, per regularizer;
* lipschitz.png: D's product upper bound and empirical lower bound over training;
* samples.png: the final samples of each run (collapse shows here); d_loss.png: D's loss;
* summary.csv: per regularizer, the numbers quoted in docs/findings.md, including Inception-free
  sample measures (see sample_quality: diversity ratio, sliced Wasserstein distance, colour gap).

``NAME*GAIN`` (e.g. sn_conv*64) trains NAME with D's output multiplied by the constant GAIN (the
regularizer's own ``regularizer.output_gain=GAIN``, so the run's bounds include it; run dir NAME_xGAIN),
to test whether two regularizers differ only by the scale they leave D at.

Runs go to DIR/runs/<name> (each with its own spectral/ folder: spectral.csv, spectra.csv, plots, and
analysis.json); ``--reuse`` keeps finished ones, so figures can be redone or regularizers added.
"""
import argparse
import csv
import json
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..cli import HelpFormatter  # noqa: E402
from ._runs import available_regularizers, limit_threads, save_figure, train  # noqa: E402

COLORS = {"sn": "tab:blue", "sn_conv": "tab:orange", "weight_clip": "tab:red", "weight_norm": "tab:green",
          "wgan_gp": "tab:purple", "none": "tab:gray", "orthonormal": "tab:brown", "dragan": "tab:pink",
          "batch_norm": "tab:olive", "layer_norm": "tab:cyan", "sn_conv_x64": "goldenrod"}


def sample_quality(module, datamodule, n: int = 1000, seed: int = 0) -> dict:
    """Inception-free measures on n real / n generated samples (pixels in [-1, 1]):

    * diversity: mean pairwise L2 distance of generated samples over that of real ones (<< 1: collapse);
    * swd: sliced Wasserstein-1 distance between the two sets of flattened images (128 directions);
    * color_gap: L2 distance between the mean pixel colour of each set (per channel).
    """
    from ..metrics.toy import sliced_wasserstein

    gen = torch.Generator(device=module.device).manual_seed(seed)
    real = datamodule.sample(n, gen).float().cpu()
    z = torch.randn(n, module.z_dim, generator=torch.Generator().manual_seed(seed))
    fake = module.generate(n, z=z).float()
    if not torch.isfinite(fake).all():
        return {"diversity": float("nan"), "swd": float("nan"), "color_gap": float("nan")}
    rf, ff = real.flatten(1), fake.flatten(1)
    channel = (1,) if real.dim() == 2 else (0, 2, 3)
    return {"diversity": float(torch.pdist(ff[:256]).mean() / torch.pdist(rf[:256]).mean()),
            "swd": sliced_wasserstein(ff.numpy(), rf.numpy(), seed=seed),
            "color_gap": float((fake.mean(channel) - real.mean(channel)).norm()) if real.dim() == 4 else float("nan")}


def _parse(spec: str) -> tuple:
    """"sn_conv*64" -> ("sn_conv_x64", 64.0): a regularizer with D's output multiplied by a constant gain."""
    if "*" not in spec:
        return spec, 1.0
    reg, gain = spec.split("*")
    return f"{reg}_x{gain}", float(gain)


def monitor_of(trainer):
    from ..callbacks.spectral import SpectralMonitor

    return next((c for c in trainer.callbacks if isinstance(c, SpectralMonitor)), None)


def _save(run_dir: Path, res: dict) -> None:
    keep = ("status", "error", "steps", "seconds", "monitor_seconds", "diversity", "swd", "color_gap", "loss", "losses")
    (run_dir / "analysis.json").write_text(json.dumps({k: res[k] for k in keep}, indent=1))


def _load(run_dir: Path) -> dict | None:
    """A finished run's results from its files (for --reuse), or None."""
    from ..callbacks.spectral import read_records

    meta = run_dir / "analysis.json"
    records = read_records(run_dir / "spectral")
    if not meta.is_file() or records is None:
        return None
    res = json.loads(meta.read_text())
    res["history"], res["spectra"] = records
    res["samples"] = run_dir / "samples" / "final.png"
    return res


def run(out: Path, names, steps: int, every: int, spectrum_every: int, overrides=(), reuse: bool = False) -> list:
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for spec in names:
        name, gain = _parse(spec)
        run_dir = out / "runs" / name
        if reuse and (res := _load(run_dir)) is not None:
            results[name] = res
            print(f"{name:12s} reused from {run_dir}", flush=True)
            continue
        res = train([f"regularizer={spec.split('*')[0]}", f"steps={steps}", "logger=none", "metrics=none", "samples.every=0",
                     "checkpoint.every=0", f"callbacks.spectral.every={every}", f"callbacks.spectral.spectrum_every={spectrum_every}",
                     *([f"regularizer.output_gain={gain}"] if gain != 1.0 else []), *overrides], run_dir)
        mon = monitor_of(res["trainer"])
        res.update(sample_quality(res["module"], res["datamodule"]))
        res["history"], res["spectra"] = (mon.history, mon.spectra) if mon else ([], [])
        res["losses"] = list(res["module"].history)  # the module's logged losses (every log_every steps)
        res["monitor_seconds"] = mon.seconds if mon else 0.0
        res["samples"] = run_dir / "samples" / "final.png"
        _save(run_dir, res)
        results[name] = res
        print(f"{name:12s} {res['status']:9s} {res['steps']} steps in {res['seconds']:.0f}s "
              f"(monitor {res['monitor_seconds']:.0f}s), diversity {res['diversity']:.3f}, swd {res['swd']:.3f}", flush=True)
    rows = summarize(results)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    plot_sigma_true(results, out / "sigma_true.png")
    plot_rank_deficiency(results, out / "rank_deficiency.png")
    plot_curves(results, out / "grad_norms.png", [("grad_norm_real_mean", "-", "real"), ("grad_norm_interp_mean", "--", "interpolated")],
                "mean |grad_x D|")
    plot_curves(results, out / "lipschitz.png", [("lip_upper", "-", "product upper bound"), ("lip_lower", ":", "max |grad D| (lower)")],
                "Lipschitz bounds of D")
    plot_samples(results, out / "samples.png")
    plot_losses(results, out / "d_loss.png")
    return rows


def _layers(history) -> list:
    return [k.split("/")[1] for k in history[0] if k.endswith("/sigma_true")] if history else []


def _at(history, step):
    """The row measured at the largest g_step <= step."""
    rows = [r for r in history if r["g_step"] <= step]
    return rows[-1] if rows else None


def summarize(results: dict) -> list:
    rows = []
    for name, res in results.items():
        h = res["history"]
        row = {"regularizer": name, "loss": res["loss"], "status": res["status"], "steps": res["steps"],
               "sec_per_step": round(res["seconds"] / max(res["steps"], 1), 3),
               "monitor_share": round(res["monitor_seconds"] / max(res["seconds"], 1e-9), 4),
               "diversity": round(res["diversity"], 4), "swd": round(res.get("swd", float("nan")), 4),
               "color_gap": round(res.get("color_gap", float("nan")), 4)}
        if h:
            convs = [n for n in _layers(h) if not n.startswith(("dense", "net."))]
            first, last = h[0], h[-1]
            for label, r in (("start", first), ("end", last)):
                vals = [r[f"spectral/{n}/sigma_true"] for n in convs]
                if vals:
                    row[f"conv_sigma_true_min_{label}"] = round(min(vals), 3)
                    row[f"conv_sigma_true_max_{label}"] = round(max(vals), 3)
                row[f"reshaped_sigma_max_{label}"] = round(max(r[f"spectral/{n}/sigma_reshaped"] for n in _layers(h)), 3)
                row[f"lip_upper_{label}"] = f"{r['spectral/lip_upper']:.4g}"
                row[f"lip_lower_{label}"] = f"{r['spectral/lip_lower']:.4g}"
            for step in (100, 200, 500):
                r = _at(h, step)
                if r is not None and step <= h[-1]["g_step"]:
                    row[f"grad_real_mean_at_{step}"] = f"{r['spectral/grad_norm_real_mean']:.3g}"
            row["grad_real_mean_end"] = f"{last['spectral/grad_norm_real_mean']:.3g}"
            row["grad_interp_mean_end"] = f"{last['spectral/grad_norm_interp_mean']:.3g}"
            row["stable_rank_mean_end"] = round(sum(last[f"spectral/{n}/stable_rank"] for n in _layers(h)) / len(_layers(h)), 2)
            gaps = [r["spectral/d_real_mean"] - r["spectral/d_fake_mean"] for r in h if r["g_step"] > 0 and "spectral/d_real_mean" in r]
            if gaps:  # D's mean logit on real minus on generated images, median over the measurements after step 0
                row["logit_gap_median"] = f"{statistics.median(gaps):.3g}"
        finals = _final_spectra(res["spectra"])
        if finals:  # share of singular values above 10% of the largest, averaged over layers with > 16 values
            shares = [float((s["values"] > 0.1).float().mean()) for s in finals.values() if s["n"] > 16]
            if shares:
                row["share_sigma_above_0.1_end"] = round(sum(shares) / len(shares), 3)
        rows.append(row)
    return rows


def _final_spectra(spectra: list, kind: str = "reshaped") -> dict:
    last = {}
    for s in spectra:
        if s["kind"] == kind and (s["layer"] not in last or s["g_step"] >= last[s["layer"]]["g_step"]):
            last[s["layer"]] = s
    return last


def plot_sigma_true(results: dict, path: Path) -> None:
    names = [n for n in results if results[n]["history"]]
    ncol = min(3, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.4 * nrow), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        h = results[name]["history"]
        layers = _layers(h)
        cmap = plt.get_cmap("viridis", max(len(layers), 2))
        steps = [r["g_step"] for r in h]
        for i, layer in enumerate(layers):
            ax.plot(steps, [r[f"spectral/{layer}/sigma_true"] for r in h], color=cmap(i), lw=1.2, label=layer)
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_title(f"{name} ({results[name]['status']})", fontsize=9)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("operator norm of the layer as applied")
    axes[0][0].legend(fontsize=6, ncol=2)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    fig.suptitle("Conv-true spectral norm of each D layer during training", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def plot_rank_deficiency(results: dict, path: Path) -> None:
    finals = {n: _final_spectra(r["spectra"]) for n, r in results.items()}
    layers = list(dict.fromkeys(layer for f in finals.values() for layer, s in f.items() if s["n"] > 1))
    if not layers:
        return
    ncol = min(4, len(layers))
    nrow = math.ceil(len(layers) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.5 * ncol, 2.7 * nrow), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        for name, f in finals.items():
            if layer in f:
                s = f[layer]
                ax.plot(s["index"] + 1, s["values"], color=COLORS.get(name), lw=1.2, label=name)
        ax.set_title(layer, fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    for ax in axes.flat[len(layers):]:
        ax.axis("off")
    fig.supxlabel("index i", fontsize=9)
    fig.supylabel("sigma_i / sigma_1 of W_mat", fontsize=9)
    fig.suptitle("Singular values of each layer's reshaped weight at the end of training", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def plot_curves(results: dict, path: Path, series, ylabel: str) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, res in results.items():
        h = res["history"]
        if not h:
            continue
        steps = [r["g_step"] for r in h]
        for key, style, label in series:
            ax.plot(steps, [r.get(f"spectral/{key}", float("nan")) for r in h], style, color=COLORS.get(name), lw=1.2,
                    label=f"{name}: {label}")
    ax.set_yscale("log")
    ax.set_xlabel("generator step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def plot_losses(results: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for name, res in results.items():
        losses = res.get("losses") or []
        if losses:
            ax.plot([h["step"] for h in losses], [h["loss/d"] for h in losses], color=COLORS.get(name), lw=1, label=f"{name} ({res['loss']})")
    ax.set_xlabel("generator step")
    ax.set_ylabel("D loss (each with its own loss function)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def plot_samples(results: dict, path: Path) -> None:
    names = [n for n, r in results.items() if r["samples"].is_file()]
    if not names:
        return
    ncol = min(3, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.6 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names):
        ax.imshow(plt.imread(results[name]["samples"]))
        ax.set_title(f"{name} (diversity {results[name]['diversity']:.2f})", fontsize=9)
        ax.axis("off")
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the runs, the figures and summary.csv")
    ap.add_argument("--regularizers", default="sn,sn_conv,weight_clip,weight_norm,wgan_gp",
                    help="comma-separated options of conf/regularizer/, one run each")
    ap.add_argument("--steps", type=int, default=500, help="generator updates per run")
    ap.add_argument("--every", type=int, default=25, help="generator updates between spectral measurements")
    ap.add_argument("--spectrum-every", type=int, default=250, help="generator updates between full singular-value spectra")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more oversubscribe a shared CPU)")
    ap.add_argument("--reuse", action="store_true", help="keep runs already finished under DIR/runs (re-plot, add regularizers)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides applied to every run (the data, e.g. data=digits)")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    names = args.regularizers.split(",")
    unknown = sorted({n.split("*")[0] for n in names} - set(available_regularizers()))
    if unknown:
        ap.error(f"unknown regularizers {unknown}; available: {available_regularizers()}")
    run(args.out, names, args.steps, args.every, args.spectrum_every, args.overrides, args.reuse)
    print(f"wrote {args.out}/summary.csv and figures")


if __name__ == "__main__":
    main()
