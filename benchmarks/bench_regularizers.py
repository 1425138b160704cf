"""Cost of each regularizer: wall time of one generator update (with its n_dis D updates).

    python -m benchmarks.bench_regularizers [--reps 3] [--steps 1] [--n-dis 1 5] [--no-write]

Standard CNN G and D of the SN paper, batch 64, random CIFAR-sized (3x32x32) data, on this machine's
CPU. Every regularizer runs through the real training step (src.module.GAN under a Lightning
Trainer), timed per generator update from a callback; so do lazy R1 ("r1 every=16": R1 on every
16th D update, gamma x 16) and a weight-side method with a penalty ("sn+r1": regularizer=sn
penalty=r1). The gradient penalties are also written as a plain hand-written PyTorch loop (no
Lightning, no regularizer hooks), with a plain unregularized loop for reference, to show what the
framework costs; plain R1/R2 take the input gradient from the loss's own forward of D (real or fake
batch with requires_grad), the usual way to write them by hand.

Configurations are interleaved: each repetition times every configuration once, in an order that
rotates between repetitions, so load from other processes hits all of them alike; each ratio is
taken within a repetition (config / none of the same repetition) and the median over repetitions
is reported. Results go to docs/benchmarks.md unless --no-write: the whole list to the section
"regularizers"; a run with --only to a section of its own ("regularizers-subset", replacing the previous
subset), so the main table stays one run measured side by side and a subset never overwrites it.
"""
import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from benchmarks._report import write_section
from src.networks.standard_cnn import StandardCNNDiscriminator, StandardCNNGenerator
from src.regularizers import build_regularizer

CONF = Path(__file__).resolve().parents[1] / "conf" / "regularizer"
REGULARIZERS = ["none", "sn", "sn_conv", "weight_clip", "wgan_gp", "dragan", "weight_norm", "orthonormal", "batch_norm", "layer_norm",
                "r1", "r2", "wgan_lp", "r1 every=16", "sn+r1", "sn_gram", "bjorck", "aol"]
GRADIENT_PENALTIES = ["wgan_gp", "dragan", "wgan_lp", "r1", "r2"]
PLAIN = ["plain none"] + [f"plain {p}" for p in GRADIENT_PENALTIES]
TARGETS = {"sn": 1.05, "sn_conv": 1.15, "r1 every=16": 1.05, "aol": 1.10, "sn_gram": 1.25}
WASSERSTEIN = ("wgan_gp", "wgan_lp")
BATCH, RES, Z_DIM, POOL = 64, 32, 128, 1024


def random_data(seed: int = 0) -> SimpleNamespace:
    """POOL random CIFAR-sized uint8 images (``.data``)."""
    return SimpleNamespace(data=torch.randint(0, 256, (POOL, 3, RES, RES), dtype=torch.uint8,
                                              generator=torch.Generator().manual_seed(seed)))


def _clock():
    """(wall, this process's CPU time): CPU time is what other processes' load does not inflate."""
    return time.perf_counter(), time.process_time()


def _since(start):
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


class _BatchTimer(L.Callback):
    def __init__(self):
        self.times, self._t = [], None

    def on_train_batch_start(self, *args):
        self._t = _clock()

    def on_train_batch_end(self, *args):
        self.times.append(_since(self._t))


def build(name: str):
    """The regularizer of a penalty row ("wgan_gp"), by build_regularizer (what src.assemble uses)."""
    return build_regularizer(OmegaConf.load(CONF / f"{name}.yaml"))


class FrameworkRunner:
    """One regularizer through src.module.GAN's training step (one batch = one generator update), the run
    assembled by src.assemble from the CLI's config on the random pool (an image folder of its PNGs)."""

    def __init__(self, name: str, n_dis: int = 1, seed: int = 0):
        from src.assemble import assemble, compose

        weight_side, *keys = name.split()
        weight_side, _, penalty = weight_side.partition("+")
        prefix = "penalty" if penalty else "regularizer"
        overrides = [f"regularizer={weight_side}", f"penalty={penalty or 'none'}", *[f"{prefix}.{k}" for k in keys],
                     "data=image_folder", f"data.root={pool_folder(seed)}", "data.cache=false", f"data.batch_size={BATCH}",
                     f"data.resolution={RES}", "arch=standard_cnn", "optim=C", f"optim.n_dis={n_dis}", f"z_dim={Z_DIM}",
                     f"steps={10**6}", f"seed={seed}", f"log_every={10**6}", "metrics=none", "threads=null"]
        torch.manual_seed(seed)
        self.run_dir = Path(tempfile.mkdtemp(prefix="bench-reg-"))
        run = assemble(compose(overrides, self.run_dir), self.run_dir, trainer=False)
        self.module, self.dm = run.module, run.datamodule
        self.n_dis = n_dis

    def set_n_dis(self, n_dis: int) -> None:
        self.n_dis = self.module.n_dis = n_dis

    def run(self, steps: int) -> list[tuple]:
        # a bare timing trainer (no checkpoints, samples or loggers), refitting the same module each time;
        # the datamodule yields steps=10**6 step indices, max_steps ends the fit
        timer = _BatchTimer()
        trainer = L.Trainer(max_steps=steps * (self.n_dis + 1), max_epochs=-1, logger=False, callbacks=[timer],
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, accelerator="cpu", devices=1)
        trainer.fit(self.module, datamodule=self.dm)
        return timer.times


_POOLS: dict = {}


def pool_folder(seed: int) -> Path:
    """The random pool written once as PNGs (lossless: the image folder decodes the same uint8 pixels)."""
    if seed not in _POOLS:
        from PIL import Image

        folder = Path(tempfile.mkdtemp(prefix="bench-pool-"))
        for i, image in enumerate(random_data(seed).data.permute(0, 2, 3, 1).numpy()):
            Image.fromarray(image).save(folder / f"{i:05d}.png")
        _POOLS[seed] = folder
    return _POOLS[seed]


class PlainRunner:
    """The same update written by hand in PyTorch: what a user would write without the lab."""

    def __init__(self, penalty: str, n_dis: int = 1, seed: int = 0):
        torch.manual_seed(seed)
        self.g, self.d = StandardCNNGenerator(Z_DIM, RES, 3), StandardCNNDiscriminator(RES, 3)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.data = random_data(seed).data
        self.penalty, self.n_dis = penalty, n_dis
        self.wasserstein = penalty in WASSERSTEIN

    def set_n_dis(self, n_dis: int) -> None:
        self.n_dis = n_dis

    def real(self):
        idx = torch.randint(0, self.data.shape[0], (BATCH,))
        return self.data[idx].float() / 127.5 - 1.0

    def gp(self, real, fake):
        if self.penalty in WASSERSTEIN:
            x_hat = real + torch.rand(BATCH, 1, 1, 1) * (fake - real)
        else:  # DRAGAN as the authors' notebook: x_p = x + 0.5 std(x) U[0,1), then interpolate
            x_p = real + 0.5 * real.std() * torch.rand_like(real)
            x_hat = real + torch.rand(BATCH, 1, 1, 1) * (x_p - real)
        x_hat.requires_grad_(True)
        (grad,) = torch.autograd.grad(self.d(x_hat).sum(), x_hat, create_graph=True)
        excess = grad.flatten(1).norm(dim=1) - 1
        if self.penalty == "wgan_lp":
            excess = excess.clamp(min=0)
        return 10.0 * (excess ** 2).mean()

    def d_loss(self, real, fake):
        """The D loss with the penalty. R1/R2 by hand: the input gradient of the loss's own forward."""
        if self.penalty in ("r1", "r2"):
            (real if self.penalty == "r1" else fake).requires_grad_(True)
        d_real, d_fake = self.d(real), self.d(fake)
        if self.wasserstein:
            loss = d_fake.mean() - d_real.mean()
        else:
            loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if self.penalty in ("r1", "r2"):
            out, x = (d_real, real) if self.penalty == "r1" else (d_fake, fake)
            (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
            loss = loss + 10.0 / 2 * grad.flatten(1).pow(2).sum(1).mean()
        elif self.penalty != "none":
            loss = loss + self.gp(real, fake)
        return loss

    def step(self):
        for _ in range(self.n_dis):
            real = self.real()
            with torch.no_grad():
                fake = self.g(torch.randn(BATCH, Z_DIM))
            loss = self.d_loss(real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        out = self.d(self.g(torch.randn(BATCH, Z_DIM)))
        g_loss = -out.mean() if self.wasserstein else F.softplus(-out).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()

    def run(self, steps: int) -> list[tuple]:
        times = []
        for _ in range(steps):
            t = _clock()
            self.step()
            times.append(_since(t))
        return times


def penalty_step_times(reps: int, log, penalties=GRADIENT_PENALTIES) -> dict:
    """CPU seconds of one D update with a penalty: the lab's regularizer vs the same penalty by hand.

    The end-to-end rows above carry the whole G/D update, whose noise is of the order of a penalty's
    few-percent differences; this isolates the penalty: same D, same batch, interleaved, median.
    The lab's D loss is the module's (GAN loss on D(real), D(fake), plus regularizer.penalty);
    the plain one is PlainRunner.d_loss (R1/R2 reusing the loss's forward).
    """
    torch.manual_seed(0)
    d = StandardCNNDiscriminator(RES, 3)
    opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real, fake = torch.rand(BATCH, 3, RES, RES) * 2 - 1, torch.rand(BATCH, 3, RES, RES) * 2 - 1
    plain = PlainRunner("none")
    plain.d = d

    def lab_loss(reg, wasserstein, shared=False):
        """The module's D loss; ``shared``: D run once at the batch input_grad_at() names, the penalty
        from that forward (penalty_from_forward), as a training step that supports it does."""
        x_real, x_fake = real, fake
        at = reg.input_grad_at() if shared else None
        if at == "real":
            x_real = real.detach().requires_grad_(True)
        elif at == "fake":
            x_fake = fake.detach().requires_grad_(True)
        d_real, d_fake = d(x_real), d(x_fake)
        loss = d_fake.mean() - d_real.mean() if wasserstein else F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if at is not None:
            return loss + reg.penalty_from_forward(d, x_real, x_fake, d_real, d_fake)
        return loss + reg.penalty(d, real, fake)

    def plain_loss(pen):
        plain.penalty, plain.wasserstein = pen, pen in WASSERSTEIN
        return plain.d_loss(real.clone(), fake.clone())

    def step(loss_fn):
        start = _clock()
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return _since(start)[1]

    variants = {}
    for pen in penalties:
        reg = build(pen)
        variants[f"{pen} (lab)"] = lambda reg=reg, pen=pen: lab_loss(reg, pen in WASSERSTEIN)
        variants[f"{pen} (plain)"] = lambda pen=pen: plain_loss(pen)
        if hasattr(reg, "input_grad_at"):
            variants[f"{pen} (shared)"] = lambda reg=reg, pen=pen: lab_loss(reg, pen in WASSERSTEIN, shared=True)
    out = {k: [] for k in variants}
    for k, f in variants.items():  # warm-up
        step(f)
    names = list(variants)
    for rep in range(reps):
        for k in names[rep % len(names):] + names[:rep % len(names)]:
            out[k].append(step(variants[k]))
    log("penalty D steps: " + ", ".join(f"{k} {statistics.median(v):.3f}s" for k, v in out.items()))
    return out


def penalty_table(out: dict) -> str:
    lines = ["One D update with the penalty alone (forward real + fake, penalty, backward, Adam step), CPU time, "
             "median of interleaved repetitions:", "",
             "| penalty | lab (s) | plain (s) | lab / plain | lab, one forward (s) | one forward / plain |", "|---|---|---|---|---|---|"]
    for pen in GRADIENT_PENALTIES:
        if f"{pen} (lab)" not in out:
            continue
        lab, plain = out[f"{pen} (lab)"], out[f"{pen} (plain)"]
        ratio = statistics.median(a / b for a, b in zip(lab, plain))
        row = f"| {pen} | {statistics.median(lab):.3f} | {statistics.median(plain):.3f} | {ratio:.3f} |"
        shared = out.get(f"{pen} (shared)")
        if shared:
            row += f" {statistics.median(shared):.3f} | {statistics.median(a / b for a, b in zip(shared, plain)):.3f} |"
        else:
            row += " – | – |"
        lines.append(row)
    lines += ["", "lab: the penalty as the training step calls it (regularizer.penalty: its own float32 forward of D at "
              "the batch). One forward: R1/R2 from the GAN loss's own forward of D at the real (R1) or generated (R2) "
              "batch, run with requires_grad (regularizer.input_grad_at / penalty_from_forward), as plain R1/R2 are "
              "written by hand; used by a float32 training step that supports it (under autocast the penalty keeps "
              "its own float32 forward)."]
    return "\n".join(lines)


def make_runner(name: str):
    return PlainRunner(name.split()[1]) if name.startswith("plain ") else FrameworkRunner(name)


def measure(runners: dict, n_dis: int, reps: int, steps: int, log) -> dict:
    """{name: [(wall, cpu) sec per generator update, one per repetition]}, configurations interleaved."""
    names = list(runners)
    for r in runners.values():
        r.set_n_dis(n_dis)
    out = {n: [] for n in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for n in order:
            times = runners[n].run(steps)
            out[n].append(tuple(statistics.mean(t[i] for t in times) for i in (0, 1)))
        log(f"n_dis={n_dis} rep {rep + 1}/{reps}: " + ", ".join(f"{n} {out[n][-1][0]:.2f}s/{out[n][-1][1]:.2f}s" for n in names))
    return out


def median_ratio(a: list, b: list, i: int) -> float:
    """Median over repetitions of a/b, for wall (i=0) or CPU (i=1) time."""
    return statistics.median(x[i] / y[i] for x, y in zip(a, b))


def table(results: dict, n_dis_list) -> str:
    head = "| configuration | " + " | ".join(f"n_dis={k}: × none (CPU) | × none (wall) | s / update (wall)" for k in n_dis_list) + " | target |"
    sep = "|---|" + "---|---|---|" * len(n_dis_list) + "---|"
    rows = [head, sep]
    for name in REGULARIZERS + PLAIN:
        if name not in results[n_dis_list[0]]:
            continue
        cells = []
        for k in n_dis_list:
            res = results[k]
            base = res["plain none"] if name.startswith("plain ") else res["none"]
            cells.append(f"{median_ratio(res[name], base, 1):.3f} | {median_ratio(res[name], base, 0):.3f} | "
                         f"{statistics.median(t[0] for t in res[name]):.2f}")
        target = f"≤ {TARGETS[name]:.2f}× none" if name in TARGETS else ("≤ plain loop" if name in GRADIENT_PENALTIES else "")
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {target} |")
    lines = ["\n".join(rows), "",
             "Plain rows are relative to the plain unregularized loop. Framework / plain loop, same penalty and "
             "repetition (median; CPU time, wall in parentheses):", ""]
    for pen in GRADIENT_PENALTIES + ["none"]:
        if pen in results[n_dis_list[0]] and "plain " + pen in results[n_dis_list[0]]:
            parts = [f"n_dis={k}: {median_ratio(results[k][pen], results[k]['plain ' + pen], 1):.3f} "
                     f"({median_ratio(results[k][pen], results[k]['plain ' + pen], 0):.3f})" for k in n_dis_list]
            what = " (the Lightning module's own overhead)" if pen == "none" else ""
            lines.append(f"- {pen}{what}: " + ", ".join(parts))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median over them)")
    ap.add_argument("--steps", type=int, default=1, help="generator updates timed per configuration per repetition")
    ap.add_argument("--n-dis", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--only", nargs="+", default=None, help="a subset of rows, e.g. r1 'r1 every=16' sn+r1 (none, the plain loop and the plain versions of the chosen penalties always run)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    ap.add_argument("--no-write", action="store_true", help="print the table without writing docs/benchmarks.md")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    unknown = [n for n in args.only or [] if n not in REGULARIZERS]
    if unknown:
        ap.error(f"--only {unknown[0]!r}: not a row of this benchmark; valid: {', '.join(REGULARIZERS)}")
    names = REGULARIZERS if args.only is None else ["none"] + [n for n in args.only if n != "none"]
    names = names + ["plain none"] + [f"plain {p}" for p in GRADIENT_PENALTIES if p in names]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    runners = {n: make_runner(n) for n in names}
    for r in runners.values():  # warm-up: allocations, first-call overheads (not timed)
        r.run(1)
    results = {k: measure(runners, k, args.reps, args.steps, log) for k in args.n_dis}
    body = table(results, args.n_dis)
    penalties = [p for p in GRADIENT_PENALTIES if p in names]
    if penalties:
        body += "\n\n" + penalty_table(penalty_step_times(max(5, 3 * args.reps), log, penalties))
    body += (f"\n\nStandard CNN (SN paper Table 3), batch {BATCH}, random {RES}x{RES}x3 data, {args.threads} torch "
             f"thread(s), {args.reps} interleaved repetitions x {args.steps} generator update(s) per configuration; "
             f"ratios are medians of per-repetition ratios; total {time.perf_counter() - t0:.0f} s. CPU time is this "
             f"process's (time.process_time), which load from other processes on a shared machine does not inflate; "
             f"wall time is what a user waits.")
    print(body)
    if not args.no_write:
        shown = sys.argv[1:] if argv is None else list(argv)
        cmd = " ".join(["python -m benchmarks.bench_regularizers", *(f"'{a}'" if " " in a else a for a in shown)])
        if args.only is None:
            write_section("regularizers", "Regularizer cost per generator update (CPU)", body, cmd)
        else:  # a subset: its own section, measured side by side with `none` in its own run
            write_section("regularizers-subset", "Regularizer cost per generator update (CPU), a subset rerun", body, cmd)


if __name__ == "__main__":
    main()
