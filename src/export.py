"""Write N individual generated images of a trained run, for external scorers (torch-fidelity, clean-fid).

    python -m src.export RUN_DIR_OR_CKPT --n N --out DIR [--seed S] [--batch-size B] [--format png] [--device D]

The generator is rebuilt exactly as ``python -m src.evaluate`` rebuilds it (``src.evaluate.load_generator``).
Images are written at the training resolution as 8-bit PNGs (grayscale for 1-channel data), numbered
000000.png, 000001.png, ... in generation order, with the same [-1, 1] -> uint8 rounding as the scorer
(``src.metrics.image_sets.to_uint8``). The noise follows the evaluator's scheme: the global RNG seeded with
``--seed`` (default: the run's ``metrics.seed``), one ``randn(batch, z_dim)`` per batch of ``--batch-size``
(default: the run's ``metrics.batch_size``) on ``--device``. With the run's defaults and the same device
the folder holds exactly the images ``src.evaluate RUN`` scores, so ``src.evaluate --fake DIR`` reproduces
its numbers.

The images are written into a temporary folder beside DIR and renamed to DIR at the end: an error or an
interrupt never leaves a half-written DIR. DIR must not exist, or be an empty folder.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

FORMATS = ("png",)


def parse_args(argv=None):
    from .cli import Parser

    p = Parser(prog="python -m src.export", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run directory (uses checkpoints/last.ckpt) or a .ckpt file")
    p.add_argument("--n", type=int, required=True, metavar="N", help="number of images to write")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist, or be empty)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="noise seed (default: the run's metrics.seed)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="images per generator forward; the noise depends on it (default: the run's metrics.batch_size)")
    p.add_argument("--format", choices=FORMATS, default="png", help="image file format (lossless)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available, as src.evaluate)")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n={args.n}: give at least 1 image")
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch-size={args.batch_size}: give at least 1")
    if args.seed is not None and not 0 <= args.seed < 2 ** 63:
        p.error(f"--seed={args.seed}: give an integer in [0, 2**63)")
    return args


def _out_dir(path: str) -> Path:
    from .errors import UserError

    out = Path(path).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {path} already exists and is not an empty folder; choose a new folder")
    if not out.parent.is_dir():
        raise UserError(f"--out {path}: its parent folder {out.parent} does not exist")
    return out


def export(run: str, n: int, out: str, seed: int | None = None, batch_size: int | None = None, fmt: str = "png",
           device: str | None = None) -> dict:
    """Write the images; returns what was written (folder, count, seed, batch size, checkpoint)."""
    import torch
    from PIL import Image

    from .errors import UserError
    from .evaluate import load_generator, sampler
    from .metrics.image_sets import to_uint8

    target = _out_dir(out)
    generator, config, ckpt_path, _, datamodule = load_generator(Path(run))
    if not datamodule.is_image:
        raise UserError(f"{ckpt_path} is a run on 2-D points (data={datamodule.name}), not images; "
                        f"score it with python -m src.evaluate {run}")
    metrics = config.get("metrics") or {}
    seed = int(metrics.get("seed") or 0) if seed is None else seed
    batch_size = int(metrics.get("batch_size") or 64) if batch_size is None else batch_size
    try:
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.empty(0, device=dev)
    except Exception as exc:  # an unknown name, or CUDA asked for on a machine without it
        raise UserError(f"--device {device}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}; "
                        f"valid: cpu, or cuda / cuda:N on a machine with a GPU") from None
    sample = sampler(generator, config["z_dim"], dev)
    digits = max(6, len(str(n - 1)))
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        devices = [torch.cuda.current_device() if dev.index is None else dev.index] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the caller's RNG state is untouched
            torch.manual_seed(seed)  # the evaluator's noise: one randn per batch after this seed
            index = 0
            for start in range(0, n, batch_size):
                batch = sample(min(batch_size, n - start))
                if not bool(torch.isfinite(batch).all()):  # uint8 conversion would hide it as black pixels
                    raise UserError(f"the generator of {ckpt_path} outputs non-finite values (a diverged run?); "
                                    f"nothing was written")
                images = to_uint8(batch).permute(0, 2, 3, 1).numpy()
                for image in images:
                    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(
                        tmp / f"{index:0{digits}d}.{fmt}", format=fmt.upper())
                    index += 1
        if target.exists():
            target.rmdir()  # empty (checked above); rename cannot replace a folder
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(target), "n": n, "seed": seed, "batch_size": batch_size, "device": str(dev),
            "checkpoint": str(ckpt_path), "shape": list(datamodule.sample_shape)}


def main(argv=None) -> int:
    args = parse_args(argv)
    from .errors import UserError

    try:
        info = export(args.run, args.n, args.out, args.seed, args.batch_size, args.format, args.device)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. a full disk: the partial folder is gone already
        print(f"error: cannot write the images to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or an environment failure: still one line
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    c, h, w = info["shape"]
    print(f"wrote {info['n']} images ({w}x{h}, {'grayscale' if c == 1 else 'RGB'} PNG) to {info['out']} "
          f"from {info['checkpoint']} (seed {info['seed']}, batch size {info['batch_size']}, {info['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
