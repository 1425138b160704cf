"""Cost of evaluation: Inception throughput, one pass vs torchmetrics' separate IS and FID, memory per sample.

    python -m benchmarks.bench_eval [--n 48] [--batch 16] [--reps 2] [--no-write]

* Throughput: generated-size (3x32x32) uint8 images through our evaluation (one Inception pass that
  feeds IS, FID and KID, plus the accumulators), images per second on this machine.
* One pass vs two: the same images through torchmetrics' InceptionScore and
  FrechetInceptionDistance, each with its own Inception forward (what computing them separately
  costs; KID would be a third). Timings interleave ours / theirs per repetition (the CPU is shared)
  and the ratio is the median of per-repetition ratios. Target: <= 0.55.
* Memory: what our accumulators keep, by exact tensor accounting at a few sample counts (synthetic
  features: no network needed) and the process's resident-memory growth, extrapolated to 50k.

Random Inception weights in torch-fidelity's format (no real weights on benchmark machines): the
cost of a forward pass does not depend on the weights' values. Results go to docs/benchmarks.md
(section "evaluation") unless --no-write.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._report import write_section
from src.metrics.features import extract
from src.metrics.inception import InceptionFeatures, make_random_inception_weights
from src.metrics.scores import FeatureStats, frechet_distance, kernel_distance

FEATURE_DIM, CLASSES = 2048, 1008


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def batches(images: torch.Tensor, size: int):
    return images.split(size)


def clock():
    # process CPU time (all threads) beside wall time: on a CPU shared with other jobs, wall time mostly
    # measures the neighbours; CPU time measures the work done
    return time.perf_counter(), time.process_time()


def since(t0) -> tuple[float, float]:
    wall, cpu = clock()
    return wall - t0[0], cpu - t0[1]


def time_ours(ext, images, batch, splits=10) -> tuple[float, float]:
    t0 = clock()
    extract(ext, batches(images, batch), len(images), splits, "bench")
    return since(t0)


def time_torchmetrics(weights: Path, images, batch) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore

    # constructed outside the timing, like our extractor; each holds its own copy of the network
    inception_score = InceptionScore(feature=NoTrainInceptionV3("inception-v3-compat", ["logits_unbiased"], str(weights)))
    fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights))
    t0 = clock()
    with torch.no_grad():
        for b in batches(images, batch):
            inception_score.update(b)
            fid.update(b, real=False)
    return since(t0)


def memory_of(n: int) -> tuple[int, int]:
    """(accumulator bytes, RSS growth) of one set of n samples; run in a fresh process (see memory_rows)."""
    g = torch.Generator().manual_seed(0)
    chunk_f, chunk_l = torch.rand(500, FEATURE_DIM, generator=g), torch.randn(500, CLASSES, generator=g)
    before = rss_bytes()
    stats = FeatureStats(n, FEATURE_DIM, 10)
    for s in range(0, n, 500):
        m = min(500, n - s)
        stats.update(chunk_f[:m], chunk_l[:m])
    return stats.nbytes(), rss_bytes() - before


def memory_rows(sizes) -> list:
    """One subprocess per size: in one process, freed blocks of the previous size hide the growth."""
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_eval", "--memory-of", str(n)],
                             capture_output=True, text=True, check=True).stdout
        rows.append((n, *json.loads(out.strip().splitlines()[-1])))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=32, help="images per timing (Inception on a CPU: ~0.1-0.5 s each)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mem-sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--memory-of", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        weights = make_random_inception_weights(Path(tmp) / "inception-random.pth")
        ext = InceptionFeatures(weights, "cpu", args.batch)
        images = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        time_ours(ext, images[:args.batch], args.batch)  # warm-up (allocator, oneDNN kernels)
        time_torchmetrics(weights, images[:args.batch], args.batch)
        ours, theirs, ratios = [], [], []
        for rep in range(args.reps):
            order = [("ours", lambda: time_ours(ext, images, args.batch)),
                     ("theirs", lambda: time_torchmetrics(weights, images, args.batch))]
            if rep % 2:
                order.reverse()
            t = {name: fn() for name, fn in order}
            ours.append(t["ours"])
            theirs.append(t["theirs"])
            ratios.append((t["ours"][1] / t["theirs"][1], t["ours"][0] / t["theirs"][0]))
            print(f"rep {rep}: ours {t['ours'][0]:.1f}s wall / {t['ours'][1]:.1f}s cpu, torchmetrics IS+FID "
                  f"{t['theirs'][0]:.1f}s wall / {t['theirs'][1]:.1f}s cpu; ratio cpu {ratios[-1][0]:.3f}, "
                  f"wall {ratios[-1][1]:.3f}", flush=True)

    # scoring cost after the pass (small sets: low-rank FID, precomputed KID kernel); a small warm-up
    # call first, as LAPACK's first SVD in a process is much slower than the next ones
    g = torch.Generator().manual_seed(2)
    tiny = [FeatureStats(50, FEATURE_DIM, 10) for _ in range(2)]
    for s in tiny:
        s.update(torch.rand(50, FEATURE_DIM, generator=g), torch.randn(50, CLASSES, generator=g))
    frechet_distance(*tiny)
    kernel_distance(*tiny)
    fake, real = FeatureStats(1000, FEATURE_DIM, 10), FeatureStats(1000, FEATURE_DIM, 10)
    for s in (fake, real):
        s.update(torch.rand(1000, FEATURE_DIM, generator=g), torch.randn(1000, CLASSES, generator=g))
    start = time.perf_counter()
    frechet_distance(fake, real)
    fid_s = time.perf_counter() - start
    start = time.perf_counter()
    kernel_distance(fake, real)
    kid_s = time.perf_counter() - start

    mem = memory_rows(args.mem_sizes)
    (n0, b0, _), (n1, b1, _) = mem[0], mem[-1]
    per_sample = (b1 - b0) / (n1 - n0)
    fixed = b0 - per_sample * n0
    at_50k = fixed + per_sample * 50_000

    best_wall, best_cpu = min(o[0] for o in ours), min(o[1] for o in ours)
    ips = args.n / best_wall
    ratio_cpu = statistics.median(r[0] for r in ratios)
    ratio_wall = statistics.median(r[1] for r in ratios)
    threads = torch.get_num_threads()
    lines = [
        f"Images: {args.n} uint8 3x32x32 per timing (resized to 299x299 inside the network), batch {args.batch}, "
        f"{args.reps} interleaved repetitions; random weights in torch-fidelity's format.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| our evaluation (one Inception pass -> IS + FID + KID accumulators), wall | {ips:.2f} images/s ({best_wall / args.n * 1000:.0f} ms/image) |",
        f"| same, CPU time over {threads} threads | {best_cpu / args.n * 1000:.0f} ms/image ({args.n / best_cpu * threads:.2f} images/s if {threads} cores were ours alone) |",
        f"| torchmetrics InceptionScore + FrechetInceptionDistance (two passes), wall | {args.n / min(t[0] for t in theirs):.2f} images/s |",
        f"| time ratio ours / torchmetrics' two passes, CPU time (median; target <= 0.55) | **{ratio_cpu:.3f}** ({', '.join(f'{r[0]:.3f}' for r in ratios)}) |",
        f"| same ratio, wall time (noisy on a shared CPU) | {ratio_wall:.3f} ({', '.join(f'{r[1]:.3f}' for r in ratios)}) |",
        f"| FID from 1,000 vs 1,000 features (low-rank path) | {fid_s:.2f} s |",
        f"| KID, 100 subsets of 1,000 (one precomputed kernel) | {kid_s:.2f} s |",
        f"| 50k generated images at this rate | {50_000 / ips / 3600:.1f} h on this CPU |",
        "",
        "Memory of the accumulators of one image set (exact tensor bytes; RSS growth of this process as a check):",
        "",
        "| samples | kept by our accumulators | RSS growth |",
        "|---|---|---|",
        *[f"| {n:,} | {b / 2**20:.1f} MiB | {r / 2**20:.1f} MiB |" for n, b, r in mem],
        f"| 50,000 (extrapolated) | {at_50k / 2**20:.0f} MiB | |",
        "",
        f"Per sample: {per_sample:.0f} bytes (the float32 2048-d features KID subsamples, and a split index); fixed: "
        f"{fixed / 2**20:.1f} MiB (float64 feature sum and outer-product sum for FID, per-split softmax sums for IS). "
        f"FID and IS are running sums; only KID needs per-sample features. For comparison, per sample: torchmetrics' "
        f"InceptionScore keeps 1008 float32 logits (3.9 KiB) and KernelInceptionDistance 2048 float32 features per set "
        f"(8 KiB); torch-fidelity keeps 2048 + 1008 floats (11.9 KiB) per input. The real set's statistics are cached "
        f"on disk in the same layout (sums + features): ~{(fixed + per_sample * 10_000) / 2**20:.0f} MiB for the paper's "
        f"10,000 real images, ~{at_50k / 2**20:.0f} MiB for 50,000.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        print("written:", write_section("evaluation", "Evaluation (IS / FID / KID)", body, "python -m benchmarks.bench_eval"))


if __name__ == "__main__":
    main()
