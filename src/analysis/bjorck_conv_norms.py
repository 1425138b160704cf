"""What Björck orthonormalization bounds on the standard CNN: reshaped matrices, not convolutions.

Every layer's reshaped matrix has all singular values 1, but the convolutions as applied do not
have norm 1.

    python -m src.analysis.bjorck_conv_norms [--out docs/figures/bjorck] [--seeds 0,1,2] [--resolution 32]

Wraps the standard CNN's D with ``regularizer=bjorck`` (orthogonal init, 20 iterations) and prints,
per layer, the reshaped matrix's extreme singular values (SVD) and the operator norm of the layer as
applied at its real input size, stride and padding (Lanczos to 1e-6, src.spectral.lipschitz.layer_norms),
with their product (the chain's upper bound on Lip(D)); writes conv_norms.csv.
"""
import csv
import math
from pathlib import Path

import torch

from ..cli import Parser
from ._runs import limit_threads


def measure(seed: int, resolution: int = 32, iterations: int = 20) -> list:
    from ..networks.standard_cnn import StandardCNNDiscriminator
    from ..regularizers.bjorck import Bjorck
    from ..spectral.lipschitz import layer_norms, weight_layers

    torch.manual_seed(seed)
    d = StandardCNNDiscriminator(resolution, 3)
    x = torch.randn(2, 3, resolution, resolution)
    Bjorck(iterations).wrap(d, x)
    true = layer_norms(d, x, kind="true", tol=1e-6)
    rows = []
    for name, layer in weight_layers(d).items():
        s = torch.linalg.svdvals(layer.weight.detach().flatten(1).double())
        rows.append({"seed": seed, "layer": name, "reshaped_shape": "x".join(map(str, layer.weight.flatten(1).shape)),
                     "reshaped_sigma_min": round(float(s.min()), 6), "reshaped_sigma_max": round(float(s.max()), 6),
                     "operator_norm": round(true[name], 4)})
    rows.append({"seed": seed, "layer": "product", "operator_norm": round(math.prod(true.values()), 2)})
    return rows


def main(argv=None):
    ap = Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for conv_norms.csv (default: print only)")
    ap.add_argument("--seeds", default="0,1,2", help="initialisation seeds, comma-separated")
    ap.add_argument("--resolution", type=int, default=32, help="input size of the standard CNN")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds {args.seeds!r} is invalid; give integers separated by commas, e.g. 0,1,2")
    if args.resolution < 8 or args.resolution % 8:
        ap.error(f"--resolution {args.resolution} is invalid; the standard CNN takes a positive multiple of 8")
    limit_threads(args.threads)
    rows = [r for seed in seeds for r in measure(seed, args.resolution)]
    print(f"{'seed':>4} {'layer':12s} {'W_mat':>9s} {'sigma(W_mat) min..max':>22s} {'norm as applied':>15s}")
    for r in rows:
        sig = f"{r['reshaped_sigma_min']:.6f}..{r['reshaped_sigma_max']:.6f}" if "reshaped_shape" in r else ""
        print(f"{r['seed']:>4} {r['layer']:12s} {r.get('reshaped_shape', ''):>9s} {sig:>22s} {r['operator_norm']:>15}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(args.out / "conv_norms.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out / 'conv_norms.csv'}")


if __name__ == "__main__":
    main()
