"""Score a trained generator, or a folder of images, with IS / FID / KID under a chosen protocol.

    python -m src.evaluate RUN_DIR_OR_CKPT [--protocol paper|full|fast] [--n-real N] [--n-fake N]
                           [--inception-weights PATH] [--data-root DIR] [--real-split SPLIT] [--json OUT]
    python -m src.evaluate --fake DIR --real DIR|cifar10|stl10|digits [--data-root DIR] [...]

A run is rebuilt from its checkpoint: the generator's architecture from the resolved run config the
module stores in every checkpoint (``run_config``; the run dir's .hydra/config.yaml for checkpoints
without it), its weights from the state dict. Checkpoints are read with torch.load(weights_only=True),
which never executes code from the file. Errors are one line and a non-zero exit status.

A folder of generated images must hold individual images: the sample grids a run writes
(samples/step_*.png, final.png; see src/callbacks/samples.py) are refused, and
``python -m src.export RUN --n N --out DIR`` writes individual ones. Fewer generated images than the
paper protocol's (5,000) get a warning (stderr and ``warnings`` in --json): FID and KID are biased by
the sample count, so such numbers are not comparable to published ones.
"""
import json
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"
WEIGHTS_HINT = {"option": "--inception-weights", "fallback": "then rerun"}
PROTOCOLS = ("paper", "full", "fast")

def reference_datasets() -> tuple:
    """The datasets --real may name (src/data/spec.py: named_reference)."""
    from .data import datasets, names

    return tuple(n for n in names() if datasets()[n].named_reference)


def parse_args(argv=None):
    from .cli import Parser

    p = Parser(prog="python -m src.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", help="a run directory (uses checkpoints/last.ckpt) or a .ckpt file")
    p.add_argument("--fake", metavar="DIR", help="score this folder of generated images instead of a run")
    p.add_argument("--real", metavar="DIR|DATASET", help=f"with --fake: a folder of real images or one of {', '.join(reference_datasets())}")
    p.add_argument("--data-root", metavar="DIR", help="where the real dataset is (default: the run's data.root, or the "
                   "data config's default root)")
    p.add_argument("--real-split", metavar="SPLIT", help="dataset split of the real images (default: the training split)")
    p.add_argument("--protocol", choices=PROTOCOLS, help="sample counts and splits (default: the run's, else paper)")
    p.add_argument("--n-real", type=int, metavar="N", help="real images (overrides the protocol)")
    p.add_argument("--n-fake", type=int, metavar="N", help="generated images (overrides the protocol)")
    p.add_argument("--inception-weights", metavar="PATH", help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per forward pass of the feature network")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--json", metavar="OUT", help="also write the scores and the protocol to this JSON file")
    args = p.parse_args(argv)
    if (args.run is None) == (args.fake is None):
        p.error("give a run directory / checkpoint, or --fake DIR --real DIR|DATASET")
    if args.fake is not None and args.real is None:
        p.error("--fake needs --real DIR or --real DATASET")
    if args.run is not None and args.real is not None:
        p.error("--real goes with --fake; a run is scored against its own dataset (use --data-root / --real-split)")
    for key in ("n_real", "n_fake", "batch_size"):
        value = getattr(args, key)
        if value is not None and value < (1 if key == "batch_size" else 2):
            p.error(f"--{key.replace('_', '-')}={value} is too small")
    return args


def load_protocol(name: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(CONF / "metrics" / f"{name}.yaml"), resolve=True)


def metrics_config(args, run_metrics: dict | None = None) -> dict:
    """The protocol preset, then the run's own choices where no preset is asked for, then the flags."""
    run_metrics = run_metrics or {}
    name = args.protocol or (run_metrics.get("name") if run_metrics.get("name") in PROTOCOLS else "paper")
    cfg = load_protocol(name)
    if args.protocol is None and run_metrics.get("name") in PROTOCOLS:
        cfg.update({k: v for k, v in run_metrics.items() if k in cfg and v is not None})
    cfg["every"] = 0
    weights = args.inception_weights or run_metrics.get("inception_weights")
    if weights and not args.inception_weights and not Path(weights).is_file():
        weights = None  # the run's path from another machine: fall back to the hub cache
    cfg["inception_weights"] = weights
    for key in ("n_real", "n_fake", "batch_size"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.real_split:
        cfg["real_split"] = args.real_split
    return cfg


# ---- runs and checkpoints ------------------------------------------------------------------------------
def find_checkpoint(path: Path) -> Path:
    from .errors import UserError

    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"{path} is neither a run directory nor a checkpoint file")
    last = path / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    ckpts = sorted(path.glob("checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime) or sorted(path.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise UserError(f"{path} holds no checkpoint (looked for checkpoints/last.ckpt and checkpoints/*.ckpt)")
    return ckpts[-1]


def load_run(path: Path):
    """(checkpoint dict, resolved run config dict, checkpoint path)."""
    import torch

    from .errors import UserError

    ckpt_path = find_checkpoint(path)
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(f"cannot read checkpoint {ckpt_path} with torch.load(weights_only=True) ({type(exc).__name__}: "
                        f"{first}); it is not a checkpoint of this project, or it is damaged") from None
    config = ckpt.get("run_config") if isinstance(ckpt, dict) else None
    if not config:
        run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
        hydra_cfg = run_dir / ".hydra" / "config.yaml"
        if not hydra_cfg.is_file():
            raise UserError(f"{ckpt_path} stores no run_config and {hydra_cfg} does not exist; cannot rebuild the generator")
        from omegaconf import OmegaConf

        saved = OmegaConf.load(hydra_cfg)
        # only what rebuilding and scoring need: other keys may interpolate ${hydra:...}, unset outside Hydra
        config = {k: OmegaConf.to_container(saved[k], resolve=True) if OmegaConf.is_config(saved[k]) else saved[k]
                  for k in ("arch", "data", "z_dim", "metrics", "optim") if k in saved}
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"{ckpt_path} has no state_dict; is it a Lightning checkpoint of src.train?")
    return ckpt, config, ckpt_path


def load_generator(path: Path):
    """Rebuild a run's generator from a run dir or checkpoint: (generator in eval mode on the CPU, run config,
    checkpoint path, checkpoint dict, data module (not loaded: its name and sample shape only)).
    The one rebuild that src.evaluate and src.export share."""
    from .assemble import build_datamodule
    from .errors import ConfigError, UserError

    ckpt, config, ckpt_path = load_run(Path(path).expanduser())
    try:
        datamodule = build_datamodule(config.get("data") or {})
    except (ConfigError, TypeError) as exc:
        raise UserError(f"{ckpt_path}: the run's data config cannot be read back ({exc})") from None
    generator = build_generator(config, ckpt["state_dict"], datamodule)
    return generator, config, ckpt_path, ckpt, datamodule


def build_generator(config: dict, state_dict: dict, datamodule):
    """The run's generator (src.assemble.build_networks, as training built it) with the checkpoint's weights."""
    from .assemble import build_networks
    from .errors import UserError

    try:
        generator, _ = build_networks(config["arch"], config["z_dim"], datamodule)
    except Exception as exc:
        raise UserError(f"cannot rebuild the generator from the run config (arch={config['arch'].get('name')}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    weights = {k[2:]: v for k, v in state_dict.items() if k.startswith("G.")}
    missing, unexpected = generator.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise UserError(f"the checkpoint's generator weights do not fit arch={config['arch'].get('name')} "
                        f"({len(missing)} missing, {len(unexpected)} unexpected keys)")
    return generator.eval()


class Rebuilt:
    """A rebuilt generator with what the evaluators use of a GAN module: G, z_dim, g_step, generate(n, z=...)."""

    def __init__(self, generator, z_dim: int, g_step: int | None = None):
        self.G, self.z_dim, self.g_step = generator, z_dim, g_step

    def generate(self, n: int, z=None):
        import torch

        with torch.no_grad():
            return self.G(torch.randn(n, self.z_dim) if z is None else z).float().cpu()


def sampler(generator, z_dim: int, device):
    import torch

    generator.to(device)

    @torch.no_grad()
    def sample(n: int):
        return generator(torch.randn(n, z_dim, device=device)).float().cpu()

    return sample


def score_run(args) -> tuple[dict, dict, dict]:
    import torch

    from .assemble import build_datamodule
    from .errors import UserError
    from .metrics.evaluator import ImageEvaluator
    from .metrics.image_sets import datamodule_set

    generator, config, ckpt_path, ckpt, _ = load_generator(Path(args.run))
    # scoring never downloads a dataset behind the user's back
    datamodule = build_datamodule(config["data"], download=False, **({"root": args.data_root} if args.data_root else {}))
    datamodule.load()
    device = torch.device(args.device) if args.device else None
    source = {"checkpoint": str(ckpt_path), "generator_steps": _g_steps(ckpt, config), "data": datamodule.name}
    if not datamodule.is_image:
        from .metrics.toy import ToyEvaluator

        toy = ToyEvaluator(n_samples=args.n_fake or 2500, variant=datamodule.variant, std=datamodule.std)
        metrics = toy.evaluate(Rebuilt(generator, config["z_dim"], source["generator_steps"]))  # its own seeded noise
        return metrics, toy.protocol(), source
    cfg = metrics_config(args, config.get("metrics"))
    evaluator = ImageEvaluator(cfg, features=datamodule.spec.features, device=device, weights_hint=WEIGHTS_HINT)
    evaluator.check_ready()
    if args.real_split and datamodule.spec.splits is None:
        raise UserError(f"--real-split does not apply to data={datamodule.name} (it has one set of images)")
    metrics = evaluator.score(sampler(generator, config["z_dim"], evaluator.device),
                              datamodule_set(datamodule, cfg.get("real_split"), cfg["n_real"]))
    return metrics, evaluator.protocol(), source


def _g_steps(ckpt: dict, config: dict):
    n_dis = (config.get("optim") or {}).get("n_dis")
    step = ckpt.get("global_step")
    return int(step) // (int(n_dis) + 1) if step is not None and n_dis else None


def score_folders(args) -> tuple[dict, dict, dict]:
    import torch
    from omegaconf import OmegaConf

    from .assemble import build_datamodule
    from .errors import UserError
    from .metrics.evaluator import ImageEvaluator
    from .metrics.image_sets import datamodule_set, folder_set

    real = args.real
    references = reference_datasets()
    refuse_grids(args.fake, "--fake")  # before loading any network: a grid is never worth scoring
    if real not in references and Path(real).expanduser().is_dir():
        refuse_grids(real, "--real")
    cfg = metrics_config(args)
    device = torch.device(args.device) if args.device else None
    if real in references:
        preset = OmegaConf.load(CONF / "data" / f"{real}.yaml")
        data = {k: preset.get(k) for k in ("_target_", "name", "split", "resolution", "channels", "batch_size")}
        root = args.data_root or preset.get("root")  # the data config's default (e.g. $CIFAR10_ROOT or data/cifar10)
        datamodule = build_datamodule(data, root=root, download=False).load()
        evaluator = ImageEvaluator(cfg, features=datamodule.spec.features, device=device, weights_hint=WEIGHTS_HINT)
        evaluator.check_ready()
        real_set = datamodule_set(datamodule, cfg.get("real_split"), cfg["n_real"])
    else:
        if not Path(real).expanduser().is_dir():
            raise UserError(f"--real {real} is neither a folder nor one of {', '.join(references)}")
        if args.real_split:
            raise UserError("--real-split applies to datasets, not to a folder of real images")
        evaluator = ImageEvaluator(cfg, features="inception", device=device, weights_hint=WEIGHTS_HINT)
        evaluator.check_ready()
        real_set = folder_set(real, cfg["n_real"], channels=evaluator.features().channels)
    fake_set = folder_set(args.fake, cfg["n_fake"], channels=evaluator.features().channels,
                          name=f"folder:{Path(args.fake).expanduser().resolve()}")
    metrics = evaluator.score(fake_set, real_set)
    return metrics, evaluator.protocol(), {"fake": str(Path(args.fake).resolve()), "real": real}


def refuse_grids(folder: str, option: str) -> None:
    """Refuse a folder that holds training sample grids (many images in one file: IS ~1, meaningless FID)."""
    from .callbacks.samples import is_sample_grid
    from .data.image_folder import list_images
    from .errors import DataError, UserError

    try:
        files = list_images(folder)
    except DataError:
        return  # no images there: scoring reports that in its own words
    grids = [f for f in files if is_sample_grid(f)]
    if grids:
        raise UserError(f"{option} {folder}: {grids[0]} " + (f"(and {len(grids) - 1} more) " if len(grids) > 1 else "")
                        + "is a sample grid written during training, not one generated image; export individual "
                        "images with python -m src.export RUN_DIR --n 5000 --out DIR and score DIR")


def sample_count_warnings(metrics: dict, protocol: dict) -> list[str]:
    """One line per reason the scores are not comparable to published ones (too few generated images)."""
    if "fid" not in metrics:
        return []
    n_fake, expected = protocol.get("n_fake"), load_protocol("paper")["n_fake"]
    if n_fake is None or n_fake >= expected:
        return []
    name = protocol.get("name")
    own = f", protocol {name} {load_protocol(name)['n_fake']}" if name in PROTOCOLS and name != "paper" else ""
    return [f"only {n_fake} generated images were scored (protocol paper expects {expected}{own}): FID and KID are "
            f"biased upward with fewer images, so these numbers are not comparable to published ones"]


def table(metrics: dict, protocol: dict) -> str:
    if "fid" not in metrics:
        return "\n".join(f"{k:24s} {v}" for k, v in metrics.items())
    rows = [("IS", f"{metrics['is_mean']:.4f} ± {metrics['is_std']:.4f}"),
            ("FID", f"{metrics['fid']:.4f}"),
            ("KID", f"{metrics['kid_mean']:.6f} ± {metrics['kid_std']:.6f}")]
    lines = ["metric  value", "------  " + "-" * 24] + [f"{a:6s}  {b}" for a, b in rows]
    p = protocol
    lines.append(f"protocol {p.get('name')}: {p.get('n_fake')} generated vs {p.get('n_real')} real "
                 f"({p.get('dataset')}, {p.get('real_split')}); IS {p.get('is_splits')} splits; "
                 f"KID {p.get('kid_subsets')} subsets of {p.get('kid_subset_size')}")
    lines.append(f"features {p.get('features')}; weights sha256 {str(p.get('weights_sha256'))[:16]}…")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .errors import UserError

    try:
        metrics, protocol, source = score_run(args) if args.run else score_folders(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an environment failure: still one line
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    print(table(metrics, protocol))
    warnings = sample_count_warnings(metrics, protocol)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        from .summary import _clean

        out = Path(args.json).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_clean({**metrics, "eval_protocol": protocol, "source": source, "warnings": warnings}),
                                  indent=2) + "\n")
        print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
