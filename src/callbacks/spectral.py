"""Spectral monitoring of D during training: per-layer norms, singular value spectra, gradient norms.

Every ``every`` generator updates (and at the start and the end) the monitor records, per Linear /
Conv2d layer of D (its effective weight, so parametrized layers are seen as normalized):

* ``sigma_reshaped``: |W.flatten(1)|_2, exact (float64 Gram eigenvalues; what Miyato's SN
  normalizes),
* ``sigma_true``: the operator norm of the layer as applied (stride, padding, the input size it
  sees), by power iteration on the convolution itself, warm-started from the previous call's
  iterate (``warmup_iterations`` the first time, ``power_iterations`` after; the estimate approaches
  the norm from below),
* ``stable_rank``: |W|_F^2 / sigma_reshaped^2 (small when a layer uses few singular directions),

and for D as a whole the bound ``lip_upper`` (the sigma_true combined by D's structure, see
src.spectral.lipschitz), the same combination of reshaped norms ``lip_upper_reshaped``, and
input-gradient norms |grad_x D| at ``n_points`` real, generated and interpolated points (mean and
max; ``lip_lower``, the largest, is a lower bound on D's Lipschitz constant) and D's mean output
there (``d_real_mean``, ``d_fake_mean``, ``d_interp_mean``). Every ``spectrum_every`` updates
(from step 0 when the run is at least that long) and at the end it also keeps the full spectra: the
reshaped matrix's singular values and, for convolutions, the FFT spectrum of the circular
convolution on the zero-padded input's torus, whose largest value ``sigma_fft_bound`` is a rigorous
upper bound on the layer's true norm (exact for circular 'same' padding and stride 1), and the
CERTIFIED bound ``sigma_certified`` of each layer as applied (src.spectral.certified: polyphase for
strides, per-frequency Cholesky certificates; never below the true norm, unlike ``sigma_true``) with
their combination ``lip_certified`` (output gain included; absent when D's structure has no
certificate).

Scalars go to every active logger (trainer.loggers, keys ``spectral/...``) and to
``<run dir>/spectral/spectral.csv``; spectra to ``spectral/spectra.csv`` (sorted sigma_i / sigma_1);
at the end of the run (or when it fails) it plots ``sigma.png`` (trajectories per layer and the
bounds), ``spectra.png`` (normalized spectra per layer, SN paper Fig. 3 style) and
``grad_norms.png``.

It never changes training: D is read in eval mode (an SN parametrization in train mode would run an
extra power iteration), gradients are taken only with respect to inputs, and every random draw
comes from the monitor's own generator (not the module's or the global RNG).
Turn it off with ``callbacks.spectral=null`` (or ``callbacks.spectral.every=0``).
"""
import csv
import logging
import math
import time
from pathlib import Path

import lightning as L
import matplotlib
import torch

from ..spectral.certified import check_certifiable, layer_norm_bound
from ..spectral.exact import layer_fft_spectrum, reshaped_singular_values
from ..spectral.lipschitz import eval_mode, input_gradient_norms, interpolate, lipschitz_upper_bound, record_input_shapes, weight_layers
from ..spectral.power_iteration import LayerOperator, operator_power_iteration

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)


def _unit(n, generator, device):
    v = torch.randn(n, generator=generator)
    return (v / v.norm()).to(device)


def _subsample(values: torch.Tensor, k: int) -> tuple:
    """At most k (index, value) pairs of a sorted spectrum, evenly spread over its ranks."""
    n = len(values)
    if n <= k:
        return torch.arange(n), values
    idx = torch.linspace(0, n - 1, k).round().long()
    return idx, values[idx]


class SpectralMonitor(L.Callback):
    def __init__(self, every: int = 100, spectrum_every: int = 1000, power_iterations: int = 10, warmup_iterations: int = 100,
                 n_points: int = 64, plot: bool = True, out_dir: str | None = None, max_spectrum_points: int = 1024, seed: int = 0):
        self.every, self.spectrum_every = int(every or 0), int(spectrum_every or 0)
        self.power_iterations, self.warmup_iterations, self.n_points = int(power_iterations), int(warmup_iterations), int(n_points)
        self.plot, self.out_dir, self.max_spectrum_points, self.seed = plot, out_dir, int(max_spectrum_points), int(seed)
        self.history: list[dict] = []   # one row of scalars per measurement
        self.spectra: list[dict] = []   # {g_step, layer, kind, n, sigma_1, index, values (normalized)}
        self.seconds = 0.0              # time spent in the monitor (its overhead)
        self._v: dict = {}              # conv-true iterates (1, *input shape)
        self._warm: set = set()         # layers whose iterate has had its warm-up
        self._shapes: dict | None = None
        self._gen: torch.Generator | None = None

    # ---- Lightning hooks -----------------------------------------------------------------------------
    def on_train_start(self, trainer, module) -> None:
        if self.every and not any(r["g_step"] == module.g_step for r in self.history):
            # spectra of the initial D only when the run is long enough to get periodic ones too (a short
            # run gets its spectra at the end; this halves the monitor's fixed cost on tiny runs)
            self.measure(trainer, module, spectrum=bool(self.spectrum_every) and module.steps >= self.spectrum_every)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        g = module.g_step
        if self.every and (g % self.every == 0 or g >= module.steps):
            # the last step always gets the spectra, so the end of the run needs no second measurement
            self.measure(trainer, module, spectrum=bool(self.spectrum_every) and (g % self.spectrum_every == 0 or g >= module.steps))

    def on_train_end(self, trainer, module) -> None:
        if not self.every:
            return
        g = module.g_step
        if not any(r["g_step"] == g for r in self.history) or (self.spectrum_every and not any(s["g_step"] == g for s in self.spectra)):
            self.measure(trainer, module, spectrum=bool(self.spectrum_every))
        t0 = time.perf_counter()
        self.write(trainer)
        self.seconds += time.perf_counter() - t0  # the plots are part of the overhead
        log.info("spectral monitor: %d measurements, %.2f s in total", len(self.history), self.seconds)

    def on_exception(self, trainer, module, exception) -> None:
        if self.every and self.history:
            try:  # keep what was measured before the run diverged / failed
                self.write(trainer)
            except Exception as exc:  # never mask the run's own error
                log.warning("spectral monitor could not write its outputs: %s", exc)

    def state_dict(self) -> dict:
        return {"history": self.history, "spectra": self.spectra, "seconds": self.seconds,
                "v": {k: v.cpu() for k, v in self._v.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.spectra = list(state.get("history", [])), list(state.get("spectra", []))
        self.seconds = float(state.get("seconds", 0.0))
        self._v = dict(state.get("v", {}))
        self._warm = set(self._v)

    # ---- measurement ---------------------------------------------------------------------------------
    def _setup(self, trainer, module) -> None:
        dm = trainer.datamodule
        self._gen = torch.Generator(device=module.device).manual_seed(self.seed)
        example = dm.sample(1, self._gen)
        self._shapes = record_input_shapes(module.D, example)
        cpu_gen = torch.Generator().manual_seed(self.seed)
        layers = weight_layers(module.D)
        for name, shape in self._shapes.items():
            if name not in self._v and isinstance(layers[name], torch.nn.Conv2d):  # kept from a checkpoint when resuming
                self._v[name] = _unit(math.prod(shape), cpu_gen, module.device).view(1, *shape)
        self._v = {k: v.to(module.device) for k, v in self._v.items()}

    @torch.no_grad()
    def measure(self, trainer, module, spectrum: bool = False) -> dict:
        """Record one row of scalars (and the spectra when ``spectrum``); returns the row."""
        t0 = time.perf_counter()
        if self._shapes is None:
            self._setup(trainer, module)
        D, g = module.D, module.g_step
        row = {"g_step": g, "global_step": trainer.global_step}
        layers = weight_layers(D)
        true, reshaped, certified = {}, {}, {}
        with eval_mode(D):
            for name, shape in self._shapes.items():
                layer = layers[name]
                w = layer.weight.detach()  # effective weight (parametrizations applied, no SN update in eval)
                sv = reshaped_singular_values(w)  # exact, float64 Gram: cheaper than a power iteration's accuracy
                reshaped[name] = float(sv[0])
                if isinstance(layer, torch.nn.Conv2d):
                    n_iter = self.power_iterations if name in self._warm else max(self.power_iterations, self.warmup_iterations)
                    s_t, self._v[name], _ = operator_power_iteration(LayerOperator(layer, shape, w), self._v[name], n_iter)
                    self._warm.add(name)
                    true[name] = float(s_t)
                else:
                    true[name] = reshaped[name]  # a Linear layer's operator is its matrix
                row[f"spectral/{name}/sigma_reshaped"] = reshaped[name]
                row[f"spectral/{name}/sigma_true"] = true[name]
                row[f"spectral/{name}/stable_rank"] = float(sv.pow(2).sum()) / max(reshaped[name] ** 2, 1e-30)
                if spectrum and check_certifiable(layer) is None:
                    try:
                        certified[name] = layer_norm_bound(layer, shape, w, n_iter=15)
                        row[f"spectral/{name}/sigma_certified"] = certified[name]
                    except NotImplementedError:
                        pass
                if spectrum:
                    self._add_spectrum(g, name, "reshaped", sv)
                    if isinstance(layer, torch.nn.Conv2d) and layer.groups == 1 and layer.padding_mode in ("zeros", "circular"):
                        # float32 Gram path: sigma_i / sigma_1 to ~1e-4, plenty for the plots
                        f = layer_fft_spectrum(layer, shape, w.float(), method="gram")
                        self._add_spectrum(g, name, "fft", f)
                        row[f"spectral/{name}/sigma_fft_bound"] = float(f[0])
        row["spectral/lip_upper"] = lipschitz_upper_bound(D, true, self._shapes)[0]
        row["spectral/lip_upper_reshaped"] = lipschitz_upper_bound(D, reshaped, self._shapes)[0]
        if certified and len(certified) == len(self._shapes):
            bound, valid, _ = lipschitz_upper_bound(D, certified, self._shapes)
            if valid:
                row["spectral/lip_certified"] = bound
        row.update(self._gradients(trainer, module))
        self.seconds += time.perf_counter() - t0
        row["spectral/seconds"] = self.seconds
        if self.history and self.history[-1]["g_step"] == g:  # re-measured (end of a run stopped early): keep the newer
            self.history.pop()
        self.history.append(row)
        scalars = {k: v for k, v in row.items() if k.startswith("spectral/")}
        for logger in trainer.loggers:  # the generator step: the one x-axis of every logged value
            logger.log_metrics(scalars, step=g)
        return row

    def _add_spectrum(self, g, name, kind, values) -> None:
        values = values.detach().float().cpu()
        s1 = float(values[0]) if len(values) else 0.0
        idx, vals = _subsample(values, self.max_spectrum_points)
        self.spectra.append({"g_step": g, "layer": name, "kind": kind, "n": len(values), "sigma_1": s1,
                             "index": idx, "values": vals / max(s1, 1e-30)})

    def _gradients(self, trainer, module) -> dict:
        n = self.n_points
        if n <= 0:
            return {}
        real = trainer.datamodule.sample(n, self._gen)
        z = torch.randn(n, module.z_dim, generator=self._gen, device=module.device)
        fake = module.generate(n, z=z).to(real.device, real.dtype)
        out, best = {}, 0.0
        for kind, x in (("real", real), ("fake", fake), ("interp", interpolate(real, fake, self._gen))):
            gn, value = input_gradient_norms(module.D, x, return_outputs=True)
            out[f"spectral/grad_norm_{kind}_mean"] = float(gn.mean())
            out[f"spectral/grad_norm_{kind}_max"] = float(gn.max())
            out[f"spectral/d_{kind}_mean"] = float(value.mean())  # how far apart D puts real and fake
            best = max(best, float(gn.max()))
        out["spectral/lip_lower"] = best
        return out

    # ---- outputs -------------------------------------------------------------------------------------
    def directory(self, trainer) -> Path:
        return Path(self.out_dir or trainer.default_root_dir) / "spectral"

    def write(self, trainer) -> Path:
        if not trainer.is_global_zero:
            return self.directory(trainer)
        out = self.directory(trainer)
        out.mkdir(parents=True, exist_ok=True)
        keys = []
        for r in self.history:
            keys += [k for k in r if k not in keys]
        with open(out / "spectral.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        with open(out / "spectra.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["g_step", "layer", "kind", "n", "sigma_1", "index", "sigma_normalized"])
            for s in self.spectra:
                for i, v in zip(s["index"].tolist(), s["values"].tolist()):
                    writer.writerow([s["g_step"], s["layer"], s["kind"], s["n"], f"{s['sigma_1']:.6g}", i, f"{v:.6g}"])
        if self.plot and self.history:
            plot_sigmas(self.history, out / "sigma.png")
            plot_grad_norms(self.history, out / "grad_norms.png")
            if self.spectra:
                plot_spectra(self.spectra, out / "spectra.png")
        return out


def read_records(folder: Path) -> tuple[list, list] | None:
    """(history, spectra) as SpectralMonitor holds them, read back from the spectral.csv / spectra.csv it
    wrote into ``folder`` (the one reader of its files); None when they are not there."""
    import torch

    folder = Path(folder)
    if not (folder / "spectral.csv").is_file() or not (folder / "spectra.csv").is_file():
        return None
    with open(folder / "spectral.csv") as f:
        history = [{k: (int(v) if k in ("g_step", "global_step") else float(v)) for k, v in r.items() if v != ""}
                   for r in csv.DictReader(f)]
    spectra = {}
    with open(folder / "spectra.csv") as f:
        for r in csv.DictReader(f):
            key = (int(r["g_step"]), r["layer"], r["kind"])
            s = spectra.setdefault(key, {"g_step": key[0], "layer": key[1], "kind": key[2], "n": int(r["n"]),
                                         "sigma_1": float(r["sigma_1"]), "index": [], "values": []})
            s["index"].append(int(r["index"]))
            s["values"].append(float(r["sigma_normalized"]))
    return history, [{**s, "index": torch.tensor(s["index"]), "values": torch.tensor(s["values"])} for s in spectra.values()]


# ---- plots (also used by src.analysis) -------------------------------------------------------------------
def _layer_names(history) -> list:
    names = []
    for k in history[0]:
        if k.endswith("/sigma_true"):
            names.append(k[len("spectral/"):-len("/sigma_true")])
    return names


def plot_sigmas(history: list, path: Path, title: str = "") -> None:
    steps = [r["g_step"] for r in history]
    names = _layer_names(history)
    cmap = plt.get_cmap("viridis", max(len(names), 2))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, label in ((axes[0], "sigma_reshaped", "reshaped sigma (|W_mat|_2)"), (axes[1], "sigma_true", "conv-true sigma (operator norm as applied)")):
        for i, name in enumerate(names):
            ax.plot(steps, [r.get(f"spectral/{name}/{key}", float("nan")) for r in history], color=cmap(i), lw=1.2, label=name)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    for key, label, style in (("lip_upper", "product bound (conv-true)", "-"), ("lip_upper_reshaped", "product bound (reshaped)", "--"),
                              ("lip_lower", "max |grad D| (lower bound)", ":")):
        axes[2].plot(steps, [r.get(f"spectral/{key}", float("nan")) for r in history], style, label=label)
    axes[2].set_yscale("log")
    axes[2].set_title("Lipschitz bounds of D", fontsize=10)
    axes[2].set_xlabel("generator step")
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_grad_norms(history: list, path: Path, title: str = "") -> None:
    steps = [r["g_step"] for r in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, color in (("real", "tab:blue"), ("fake", "tab:red"), ("interp", "tab:green")):
        mean = [r.get(f"spectral/grad_norm_{kind}_mean", float("nan")) for r in history]
        mx = [r.get(f"spectral/grad_norm_{kind}_max", float("nan")) for r in history]
        ax.plot(steps, mean, color=color, lw=1.3, label=f"{kind} (mean)")
        ax.plot(steps, mx, color=color, lw=0.8, ls="--", label=f"{kind} (max)")
    ax.plot(steps, [r.get("spectral/lip_upper", float("nan")) for r in history], color="k", lw=1, label="upper bound (conv-true product)")
    ax.set_yscale("log")
    ax.set_xlabel("generator step")
    ax.set_ylabel("|grad_x D(x)|")
    ax.set_title(title or "input-gradient norms of D")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_spectra(spectra: list, path: Path, kind: str = "reshaped", title: str = "") -> None:
    """One panel per layer: sorted sigma_i / sigma_1 of each recorded step (light to dark = early to
    late); for convolutions the last step's FFT spectrum dashed (x: relative index i / n)."""
    layers = list(dict.fromkeys(s["layer"] for s in spectra))
    steps = sorted({s["g_step"] for s in spectra})
    cmap = plt.get_cmap("viridis_r", max(len(steps), 2))  # light (early) to dark (late)
    ncol = min(4, len(layers))
    nrow = (len(layers) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        for s in spectra:
            if s["layer"] != layer:
                continue
            x = (s["index"].float() + 1) / s["n"]
            marker = "o" if s["n"] <= 16 else None  # a handful of values (input / output layers)
            if s["kind"] == kind:
                ax.plot(x, s["values"], color=cmap(steps.index(s["g_step"])), lw=1, marker=marker, ms=3)
            elif s["kind"] == "fft" and s["g_step"] == steps[-1]:
                ax.plot(x, s["values"], color="k", lw=1, ls="--")
        ax.set_title(layer, fontsize=9)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(layers):]:
        ax.axis("off")
    fig.supxlabel("relative index i / n   (solid: reshaped W_mat, light->dark = early->late; dashed: FFT spectrum, last step)", fontsize=9)
    fig.supylabel("sigma_i / sigma_1", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["SpectralMonitor", "plot_grad_norms", "plot_sigmas", "plot_spectra"]
