"""Training throughput: our LightningModule + Trainer against a plain PyTorch loop doing identical work.

Same networks (built by the same code from the same seed), same real batches (sampled from the same
in-memory tensor), same Adam settings, same regularizer hooks, same n_dis; only the loop differs.
Configurations are interleaved over repetitions so machine noise hits both sides alike; the table
reports generator updates per second (median over repetitions) and ours / plain.

    python -m benchmarks.bench_training [--steps 30] [--warmup 2] [--reps 4] [--threads 1] [--regularizers none sn wgan_gp]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.nn.utils import parametrize



def build(reg: str, steps: int, run_dir: Path, extra=()):
    from src.assemble import assemble, compose

    cfg = compose([f"regularizer={reg}", "data=image_folder", f"data.root={run_dir.parent / 'imgs'}", "arch=standard_cnn",
                          "optim=C", f"steps={steps}", "metrics=none", "logger=none", "callbacks=none", "samples.every=0",
                          "checkpoint.every=0", "trainer.enable_progress_bar=false", *extra], run_dir)
    run = assemble(cfg, run_dir)
    return run.module, run.datamodule, run.trainer, run.timer


class _Window(L.Callback):
    """Wall time from the end of the warm-up-th generator update to the end of the last one."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1, self.n = warmup, None, None, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.g_step == self.warmup:
            self.t0 = time.perf_counter()
        elif module.g_step > self.warmup:
            self.t1, self.n = time.perf_counter(), module.g_step - self.warmup


def ours(reg: str, steps: int, run_dir: Path, warmup: int) -> float:
    module, dm, trainer, _ = build(reg, steps + warmup, run_dir)
    window = _Window(warmup)
    trainer.callbacks.append(window)
    trainer.fit(module, datamodule=dm)
    return window.n / (window.t1 - window.t0)


def plain(reg: str, steps: int, run_dir: Path, warmup: int) -> float:
    module, dm, _, _ = build(reg, steps + warmup, run_dir)
    G, D, loss, regz = module.G, module.D, module.gan_loss, module.regularizer
    o = module.optim
    opt_d = torch.optim.Adam(D.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]))
    opt_g = torch.optim.Adam(G.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]))
    gen = torch.Generator().manual_seed(0)
    dm.load()
    bs, n_dis, z_dim = module.batch_size, module.n_dis, module.z_dim
    G.train(), D.train()
    for step in range(steps + warmup):
        if step == warmup:  # the same window as ours: after the warm-up updates
            start = time.perf_counter()
        for _ in range(n_dis):
            real = dm.sample(bs, gen)
            with torch.no_grad():
                fake = G(torch.randn(bs, z_dim, generator=gen))
            with parametrize.cached():
                d = loss.d_loss(D(real), D(fake))
                pen = regz.penalty(D, real, fake)
                total = d if pen is None else d + pen
                opt_d.zero_grad(set_to_none=True)
                total.backward()
            opt_d.step()
            regz.after_d_step(D)
        D.requires_grad_(False)  # as careful hand-written loops (and our module) do
        with parametrize.cached():
            g = loss.g_loss(D(G(torch.randn(bs, z_dim, generator=gen))))
            opt_g.zero_grad(set_to_none=True)
            g.backward()
        D.requires_grad_(True)
        opt_g.step()
        if not torch.isfinite(d.detach()):  # the same per-step check our module makes on CPU
            raise RuntimeError("diverged")
    return steps / (time.perf_counter() - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--regularizers", nargs="+", default=["none", "sn", "wgan_gp"])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: each side owns one core, so the other core's users disturb it least)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import logging

    logging.disable(logging.WARNING)
    from tests.helpers import make_image_folder

    results = {r: {"ours": [], "plain": []} for r in args.regularizers}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        make_image_folder(run_dir / "imgs", n=256, size=32)
        for rep in range(args.reps):
            for reg in args.regularizers:
                for side, fn in (("plain", plain), ("ours", ours)) if rep % 2 else (("ours", ours), ("plain", plain)):
                    torch.manual_seed(0)
                    results[reg][side].append(fn(reg, args.steps, run_dir / f"{reg}-{side}-{rep}", args.warmup))
                print(f"rep {rep}: {reg:8s} ours {results[reg]['ours'][-1]:.3f} it/s  plain {results[reg]['plain'][-1]:.3f} it/s", flush=True)
    rows = ["| regularizer | ours (G updates/s) | plain loop (G updates/s) | ours / plain | per-rep ratios |", "|---|---|---|---|---|"]
    for reg, r in results.items():
        ratios = [a / b for a, b in zip(r["ours"], r["plain"])]
        rows.append(f"| {reg} | {statistics.median(r['ours']):.3f} | {statistics.median(r['plain']):.3f} | "
                    f"**{statistics.median(ratios):.3f}** | {', '.join(f'{x:.3f}' for x in ratios)} |")
    table = "\n".join(rows)
    print(table)
    if not args.no_write:
        from benchmarks._report import write_section

        body = (f"Standard CNN (SN-GAN Table 3) at 32x32, batch 64, setting C (n_dis 1), {args.threads} torch thread(s) per "
                f"run. Each measurement times {args.steps} generator updates after {args.warmup} warm-up updates (steady "
                f"state: start-up and teardown excluded on both sides); {args.reps} repetitions, configurations and "
                "sides interleaved (the order alternates each repetition), median over repetitions. Ours = `Trainer.fit` "
                "of the GAN LightningModule (manual optimization, the run's own callbacks: step timer, loss log every "
                "10 updates, checkpoint and sample hooks; no progress bar, no spectral monitor); plain = a hand-written "
                "loop over the same networks, batches, Adam, regularizer hooks and n_dis. Target: ours / plain >= 0.97. "
                "One thread per run because the 2-core machine is shared: a 2-thread run stalls whenever anything "
                "else takes a core, which made earlier 2-thread ratios swing by +-20%.\n\n" + table)
        write_section("training", "Training throughput: LightningModule vs a plain PyTorch loop (CPU)", body,
                      "python -m benchmarks.bench_training")


if __name__ == "__main__":
    main()
