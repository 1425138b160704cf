"""Benchmarks of the spectral tools: exact singular values of a big convolution, and the training
callback's overhead. Writes the "spectral" section of docs/benchmarks.md.

    python -m benchmarks.bench_spectral [--threads 1] [--skip-training]

1. All 524,288 singular values of a 512 -> 512 3x3 convolution on 32x32 inputs (circular padding,
   stride 1) by the FFT method: the structured-Gram path ("gram", float32: real tap products once,
   eigvalsh over the 544 rfft2 frequencies) against batched svdvals of the frequency matrices
   ("svd", timed on a subset and scaled), with its accuracy against float64 SVDs.
2. The SpectralMonitor's overhead at its default frequency (every 100 generator updates, spectra every
   1000): the same training run with and without it, side by side in one process (alternating, twice
   each), and the monitor's own timer. Runs: the embedded default (ring8 / mlp, 2000 steps) and digits / standard_cnn.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from ._report import write_section


def load() -> str:
    try:
        return "load average %.1f / %.1f / %.1f" % os.getloadavg()
    except OSError:
        return "load average unknown"


def bench_fft(threads, reps: int = 2) -> tuple:
    from src.spectral.exact import batched_svdvals, conv_singular_values_fft, frequency_matrices

    torch.manual_seed(0)
    w = torch.randn(512, 512, 3, 3) * 0.02
    rows = []
    conv_singular_values_fft(w[:8, :8], 32, method="gram")  # warm-up (MKL init)
    best = float("inf")
    for n in threads:
        torch.set_num_threads(n)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            vals = conv_singular_values_fft(w, 32, method="gram")  # frequencies spread over n worker threads
            times.append(time.perf_counter() - t0)
        assert vals.numel() == 512 * 32 * 32
        if n == threads[0]:  # accuracy on a few frequencies against float64 SVD
            half, _ = conv_singular_values_fft(w, 32, method="gram", full=False)
            ref = frequency_matrices(w.double(), 32)
            err = max(float((half[i, j].double() - torch.linalg.svdvals(ref[i, j])).abs().max()) for i, j in [(0, 0), (3, 5), (17, 16), (31, 1)])
            err = f"{err / float(vals[0]):.1e}"
        rows.append((f"FFT + structured Gram + eigvalsh (float32, rfft2 half), {n} thread(s)", min(times), err))
        best = min(best, min(times))
    torch.set_num_threads(threads[0])
    # batched svdvals of the frequency matrices: timed on 32 of the 544 and scaled
    spec = frequency_matrices(w, 32)
    mats = spec.reshape(-1, 512, 512)
    t0 = time.perf_counter()
    batched_svdvals(mats[:32], "svd")
    per = (time.perf_counter() - t0) / 32
    rows.append(("FFT + batched svdvals (complex64, rfft2 half; 32 of 544 timed, scaled), 1 thread", per * mats.shape[0], "~1e-7"))
    rows.append(("the same over all 1024 fft2 frequencies (no conjugate symmetry; scaled)", per * 1024, "~1e-7"))
    t0 = time.perf_counter()
    batched_svdvals(mats[:32], "gram")
    per_g = (time.perf_counter() - t0) / 32
    rows.append(("FFT + per-frequency complex Gram + eigvalsh (32 of 544 timed, scaled), 1 thread", per_g * mats.shape[0], "~1e-5"))
    return rows, best


def bench_certified(reps: int = 1) -> list:
    """Certified bound vs exact norm: the 512 -> 512 3x3 conv at 32x32 (circular, stride 1; exact = max
    of the full FFT spectrum, structured Gram + eigvalsh) and the SN-GAN standard CNN's D layers at
    32x32 (zero padding, their strides; exact = Lanczos-converged operator norm, float64)."""
    from torch import nn

    from src.spectral.certified import conv_norm_bound
    from src.spectral.exact import conv_singular_values_fft
    from src.spectral.power_iteration import LayerOperator, operator_norm

    rows = []
    torch.manual_seed(0)
    big = nn.Conv2d(512, 512, 3, 1, 1, padding_mode="circular", bias=False)
    nn.init.normal_(big.weight, 0, 0.02)
    t0 = time.perf_counter()
    exact = float(conv_singular_values_fft(big.weight.detach(), 32, method="gram")[0])
    t_exact = time.perf_counter() - t0
    for method in ("cholesky", "gram"):
        t0 = time.perf_counter()
        bound = conv_norm_bound(big, (512, 32, 32), method=method)
        rows.append((f"512->512 3x3 @32 circular, {method}", exact, t_exact, bound, time.perf_counter() - t0))
        print(rows[-1], flush=True)
    for c_in, c_out, k, s, n in [(3, 64, 3, 1, 32), (64, 64, 4, 2, 32), (64, 128, 3, 1, 16), (128, 128, 4, 2, 16),
                                 (128, 256, 3, 1, 8), (256, 256, 4, 2, 8), (256, 512, 3, 1, 4)]:
        layer = nn.Conv2d(c_in, c_out, k, s, 1)
        nn.init.normal_(layer.weight, 0, 0.02)
        t0 = time.perf_counter()
        exact = operator_norm(LayerOperator(layer, (c_in, n, n)), tol=1e-9)
        t_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        bound = conv_norm_bound(layer, (c_in, n, n))
        rows.append((f"{c_in}->{c_out} {k}x{k} s{s} p1 @{n}", exact, t_exact, bound, time.perf_counter() - t0))
        print(rows[-1], flush=True)
    return rows


def cholesky_floor(c: int = 512, n_freq: int = 544, distinct: int = 32) -> float:
    """Seconds of the certificate's unavoidable part on the 512-channel layer: n_freq LAPACK zpotrf
    factorizations of c x c Hermitian positive-definite matrices, timed one by one in a loop over
    ``distinct`` matrices (fresh copies, not in cache) like the certificate's, under the same load."""
    from scipy.linalg import lapack

    g = torch.randn(distinct, c, c, dtype=torch.complex128)
    a = (g @ g.mH / c + 4 * torch.eye(c, dtype=torch.complex128)).numpy()
    total, done = 0.0, 0
    while done < n_freq:
        work = a.copy()
        for i in range(min(distinct, n_freq - done)):
            t0 = time.perf_counter()
            lapack.zpotrf(work[i].T, lower=1, clean=0, overwrite_a=1)
            total += time.perf_counter() - t0
            done += 1
    return total


def bench_callback(overrides, label: str, reps: int = 2) -> dict:
    """Train the same run without and with the monitor, alternating, ``reps`` times each; keep the
    fastest of each (the least disturbed by the other users of the machine)."""
    from src.analysis._runs import train
    from src.analysis.training_spectra import monitor_of

    out = {"off": None, "on": None, "label": label}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for mode in ("off", "on") if rep % 2 == 0 else ("on", "off"):
                extra = ["callbacks.spectral=null"] if mode == "off" else []
                c0 = time.process_time()
                res = train([*overrides, "logger=none", "metrics=none", "samples.every=0", "checkpoint.every=0", *extra],
                            Path(tmp) / f"{mode}{rep}")
                run = {"wall": res["seconds"], "cpu": time.process_time() - c0, "steps": res["steps"]}
                if mode == "on":
                    mon = monitor_of(res["trainer"])
                    run.update(monitor=mon.seconds, measurements=len(mon.history), spectra=len({s["g_step"] for s in mon.spectra}))
                if out[mode] is None or run["wall"] < out[mode]["wall"]:
                    out[mode] = run
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (the CPU is shared: 1 avoids oversubscription)")
    ap.add_argument("--fft-threads", default="1,2", help="thread counts for the FFT benchmark")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--only-certified", action="store_true",
                    help="only the certified-bound table (its own section of docs/benchmarks.md)")
    ap.add_argument("--digits-steps", type=int, default=300)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = load()
    cert = bench_certified()
    cert_body = [f"{load_before} at the start (the 2-core machine is shared).", "",
                 "| layer (input) | exact norm | exact s | certified bound | bound / exact | certified s | speed-up |", "|---|---|---|---|---|---|---|"]
    cert_body += [f"| {name} | {ex:.5f} | {te:.2f} | {b:.5f} | {b / ex:.4f} | {tb:.2f} | {te / tb:.1f}x |" for name, ex, te, b, tb in cert]
    big_exact, big_speedup = cert[0][2], cert[0][2] / cert[0][4]
    floor = cholesky_floor()
    cert_body += ["", "Exact: the 512-channel row takes the largest of the full FFT spectrum (structured Gram + eigvalsh, one "
                  "thread); the SN-GAN layer rows a Lanczos-converged float64 norm of the zero-padded strided operator (not "
                  "a certificate). Certified: float64 per-frequency Cholesky certificates (\"cholesky\", tol 0.5%: half the "
                  "tap products via M_-d = M_d^T, LAPACK zpotrf in place, the power iteration on 16 sampled frequencies "
                  "when cold) or 6 Gram iterations (\"gram\", Delattre et al. 2023) on the padded torus, polyphase for "
                  "strides; the excess on the 4x4-input layer is the padded torus' border effect.", "",
                  f"The 10x target on the 512-channel layer is {'met' if big_speedup >= 10 else 'not met'} here "
                  f"({big_speedup:.1f}x; 10x would be {big_exact / 10:.2f} s). The certificate must hold at all 544 rfft2 "
                  f"frequencies (the symbol of a 3x3 kernel varies too fast for a coarser grid with a certified slack: the "
                  f"second-order bound sup <= max_grid / (1 - 2 (pi m / N)^2) for degree m = 2 costs 45% on the squared "
                  f"norm at N = 16 points per axis), and one float64 Cholesky factorization of a 512x512 complex matrix "
                  f"(the cheapest certificate of lambda_max <= mu: c^3/3 complex multiply-adds, a quarter of eigvalsh's "
                  f"tridiagonal reduction) takes {1000 * floor / 544:.1f} ms, {floor:.2f} s over the 544 frequencies (timed "
                  f"in this run, in a loop like the certificate's): a floor {big_exact / floor:.1f}x below the exact spectrum, "
                  + ("so no certificate of this kind reaches 10x on this CPU. " if big_exact / floor < 10 else
                     "so 10x is within the floor's reach in this run but not the whole certificate's. ") +
                  "Above the floor: the float64 tap products (6e9 multiply-adds, "
                  "half of them by M_-d = M_d^T), the assembly of 544 G(w) (2.3 GB written) and the power iteration on "
                  "the sampled frequencies. A float32 factorization would halve the floor but its certified rounding "
                  "margin, 4 (c + 1) u tr(mu I - G), is ~5% of mu at c = 512; Gram iteration needs ~5 complex c^3 "
                  "products per frequency for 1% (the \"gram\" row).",
                  f"\n{load()} at the end."]
    print("\n".join(cert_body))
    doc = write_section("certified", "Certified operator-norm bounds", "\n".join(cert_body),
                        "python -m benchmarks.bench_spectral --only-certified")
    if args.only_certified:
        print(f"wrote {doc}")
        return
    rows, best = bench_fft([int(t) for t in args.fft_threads.split(",")])
    torch.set_num_threads(args.threads)
    body = [f"Training threads: {args.threads}; {load_before} at the start (the 2-core machine is shared, so wall times are "
            "upper bounds of what an idle machine gives).", "",
            "### Exact singular values: 512 -> 512 3x3 convolution at 32x32 (524,288 values)", "",
            "| method | seconds | max error / sigma_1 |", "|---|---|---|"]
    body += [f"| {name} | {sec:.2f} | {err} |" for name, sec, err in rows]
    body += ["", f"Target was at most 1 s; best measured {best:.2f} s. "
             "The floor is LAPACK's Hermitian eigenvalue reduction: 544 complex 512x512 matrices take "
             "about 544 * (16/3) * 512^3 = 3.9e11 real flops, 1.2 s even at the 2 cores' full AVX-512 peak "
             "(~330 GFLOP/s), and half of the tridiagonal reduction is matrix-vector work far below peak. "
             "The structured Gram (25 real tap-product matrices combined per frequency) removes the "
             "per-frequency complex products (5.8e11 flops); what is left is eigvalsh, which runs on one "
             "worker thread per core over the frequencies (batch parallelism beats MKL's threads inside "
             "each 512x512 call).", ""]
    print("\n".join(body))
    if not args.skip_training:
        body += ["### SpectralMonitor overhead at its default frequency (every 100 steps, spectra every 1000)", "",
                 "| run | steps | wall off (s) | wall on (s) | wall overhead | CPU off (s) | CPU on (s) | CPU overhead | monitor's own timer | measurements / spectra |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        runs = [(["steps=2000"], "ring8 / mlp (embedded default)"),
                (["data=digits", f"steps={args.digits_steps}"], "digits / standard_cnn")]
        for overrides, label in runs:
            r = bench_callback(overrides, label)
            off, on = r["off"], r["on"]
            body.append(f"| {label} | {on['steps']} | {off['wall']:.1f} | {on['wall']:.1f} | {100 * (on['wall'] / off['wall'] - 1):+.1f}% | "
                        f"{off['cpu']:.1f} | {on['cpu']:.1f} | {100 * (on['cpu'] / off['cpu'] - 1):+.1f}% | "
                        f"{on['monitor']:.2f} s = {100 * on['monitor'] / on['wall']:.1f}% | {on['measurements']} / {on['spectra']} |")
            print(body[-1], flush=True)
        body += ["", "Each run twice per mode, alternating; the fastest of each is shown. Wall and CPU differences "
                 "between runs on a shared machine are still noisy (either sign); the monitor's own timer (time "
                 "inside its hooks, plots included, over the run's wall time) is the reliable share. "
                 "Short runs overstate it: they include the first measurement's 100-iteration warm-up and a "
                 "spectrum at both ends (a 300-step digits run has 2 spectra, a 100k-step run 101)."]
    body.append(f"\n{load()} at the end.")
    doc = write_section("spectral", "Spectral tools", "\n".join(body), "python -m benchmarks.bench_spectral")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
