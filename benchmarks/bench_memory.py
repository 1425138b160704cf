"""Peak memory per run: one real `python -m src.train` process per configuration, read from its summary.json.

Each run is its own process, so its peak resident set (ru_maxrss, what `summary.json`'s
`resources.peak_host_mib` records) is that run's alone; on a GPU the same key set also holds
`peak_device_mib` (torch.cuda.max_memory_allocated). The data is an in-memory image folder of
random 32x32 images (the dataset's own size adds to the host figure: 50,000 CIFAR images are 147 MiB
as uint8), so the numbers are the framework's, the networks', Adam's and the regularizer's.

    python -m benchmarks.bench_memory [--steps 5] [--regularizers none sn sn_conv wgan_gp ...] [--archs standard_cnn resnet]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REGULARIZERS = ["none", "sn", "sn_conv", "weight_clip", "wgan_gp", "dragan", "weight_norm", "orthonormal"]


def measure(arch: str, reg: str, steps: int, data_root: Path, run_dir: Path, threads: int) -> dict:
    optim = "resnet" if arch == "resnet" else "C"
    cmd = [sys.executable, "-m", "src.train", f"regularizer={reg}", f"arch={arch}", f"optim={optim}", "data=image_folder",
           f"data.root={data_root}", f"steps={steps}", "metrics=none", "logger=none", "samples.every=0",
           "checkpoint.every=0", "trainer.enable_progress_bar=false", f"threads={threads}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    summary = run_dir / "summary.json"
    if proc.returncode != 0 or not summary.is_file():
        raise RuntimeError(f"{arch}/{reg} failed: {proc.stderr.strip().splitlines()[-1:]}")
    s = json.loads(summary.read_text())
    return {**s["resources"], "sec_per_step": s["timing"]["sec_per_step"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--regularizers", nargs="+", default=REGULARIZERS)
    ap.add_argument("--archs", nargs="+", default=["standard_cnn", "resnet"])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from tests.helpers import make_image_folder

    rows = ["| arch | regularizer | peak host memory (MiB) | peak device memory (MiB) |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        data = make_image_folder(Path(tmp) / "imgs", n=256, size=32)
        for arch in args.archs:
            for reg in args.regularizers:
                r = measure(arch, reg, args.steps, data, Path(tmp) / f"{arch}-{reg}", args.threads)
                rows.append(f"| {arch} | {reg} | {r['peak_host_mib']:.0f} | {r.get('peak_device_mib', 'n/a (CPU run)')} |")
                print(rows[-1], flush=True)
    table = "\n".join(rows)
    if not args.no_write:
        from benchmarks._report import write_section

        body = (f"One `python -m src.train` process per row ({args.steps} generator updates, batch 64, 32x32, "
                f"{args.threads} thread(s), metrics off), the peak read from its `summary.json` "
                "(`resources.peak_host_mib`: the process's maximum resident set, Python, torch and the libraries "
                "included; `peak_device_mib` on a GPU). Every run writes these keys, so a sweep's report can "
                "show them per run.\n\n" + table)
        write_section("memory", "Peak memory per run", body, "python -m benchmarks.bench_memory")


if __name__ == "__main__":
    main()
