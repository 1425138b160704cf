"""The numbers of README.md's section "Seeds: how much a seed moves a score", recomputed from runs/.

    python docs/results/study_digits/seed_agreement.py [RUNS_DIR]

Prints the "seed 0 / seed 1" FID table, per setting the Spearman correlation of the 16 single methods
between seeds 0 and 1, how many keep their class (FID < 10 trains, 10-100 trails, >= 100 fails), and the
rank correlation among the methods that train with both; then, at each setting all three seeds have
completed, seed 2's FIDs and mean ± std (two markdown tables) and, per setting, a Friedman test over the methods that train with all three (chi-square p
and a permutation p from scipy's permutation_test, 100,000 seeded resamples that shuffle the scores within each seed). The report (src/report) gives mean ± std per
cell; these between-seed comparisons are specific to this write-up, so they live beside it.
"""
import sys
from pathlib import Path

import numpy as np
from scipy.stats import friedmanchisquare, permutation_test, rankdata, spearmanr

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the report's reader lives in src/
from src.report.aggregate import Stat, base_method  # noqa: E402
from src.report.collect import collect  # noqa: E402

SINGLE = ["none", "sn", "sn_conv", "weight_clip", "wgan_gp", "dragan", "weight_norm", "orthonormal",
          "batch_norm", "layer_norm", "r1", "r2", "wgan_lp", "sn_gram", "bjorck", "aol"]
PAIRS = ["sn+r1", "sn+wgan_gp"]
SETTINGS = "ABCDEF"


def load(runs: Path) -> dict:
    """FID per (seed, method, setting) of the completed jobs, read by the report's own collector."""
    return {(r.seed, base_method(r), r.optim): r.metrics["fid"]
            for r in collect([runs]).runs if r.status == "completed"}


def klass(f: float) -> int:
    return 0 if f < 10 else 1 if f < 100 else 2


def friedman_permutation_p(table: np.ndarray, n: int = 100_000) -> float:
    """Friedman's null, sampled: within each seed (row), the methods' (columns') scores are exchangeable."""
    result = permutation_test(list(table.T), lambda *cols: friedmanchisquare(*cols).statistic,
                              permutation_type="samples", n_resamples=n, alternative="greater", random_state=0)
    return float(result.pvalue)


def main(runs: Path) -> None:
    fid = load(runs)
    print("| method | " + " | ".join(SETTINGS) + " |")
    for m in SINGLE + PAIRS:
        cells = [f"{fid[(0, m, s)]:.1f} / {fid[(1, m, s)]:.1f}" if (0, m, s) in fid and (1, m, s) in fid else "–"
                 for s in SETTINGS]
        print(f"| {m} | " + " | ".join(cells) + " |")
    for s in SETTINGS:
        if not all((k, m, s) in fid for k in (0, 1) for m in SINGLE):
            continue
        x, y = [fid[(0, m, s)] for m in SINGLE], [fid[(1, m, s)] for m in SINGLE]
        agree = sum(klass(a) == klass(b) for a, b in zip(x, y))
        train = [m for m in SINGLE if fid[(0, m, s)] < 10 and fid[(1, m, s)] < 10]
        rho_train = (spearmanr([fid[(0, m, s)] for m in train], [fid[(1, m, s)] for m in train])[0]
                     if len(train) > 2 else float("nan"))
        print(f"{s}: Spearman {spearmanr(x, y)[0]:.4f}, same class {agree}/16, "
              f"train with both {len(train)} (rank correlation among them {rho_train:.4f})")
    done3 = [s for s in SETTINGS if all((k, m, s) in fid for k in (0, 1, 2) for m in SINGLE)]
    if done3:
        print("\nseed 2's FID, then mean ± std (ddof 1) over seeds 0-2, at the settings all three have completed:")
        header = "| method | " + " | ".join(done3) + " |\n|---|" + "---|" * len(done3)
        print(header)
        for m in SINGLE + PAIRS:
            print(f"| {m} | " + " | ".join(f"{fid[(2, m, s)]:.1f}" if (2, m, s) in fid else "–" for s in done3) + " |")
        print("\n" + header)
        for m in SINGLE + PAIRS:
            cells = []
            for s in done3:  # the report's own statistic, so these cells match report.md's
                st = Stat.of([fid[(k, m, s)] for k in range(3) if (k, m, s) in fid])
                cells.append(f"{st.mean:.1f} ± {st.std:.1f}" if st.n == 3 else "–")
            print(f"| {m} | " + " | ".join(cells) + " |")
    for s in done3:
        print(f"\nthree seeds at {s}:")
        same = sum(len({klass(fid[(k, m, s)]) for k in range(3)}) == 1 for m in SINGLE)
        train = [m for m in SINGLE if all(fid[(k, m, s)] < 10 for k in range(3))]
        print(f"  same class in all three: {same}/16; train in all three: {', '.join(train)}")
        if len(train) > 2:
            table = np.array([[fid[(k, m, s)] for m in train] for k in range(3)])
            ranks = np.array([rankdata(row) for row in table])  # Friedman's own ranks (ties averaged)
            chi2, p = friedmanchisquare(*table.T)
            kendall_w = chi2 / (3 * (len(train) - 1))
            print(f"  Friedman over them: chi2 {chi2:.2f}, p {p:.4f} (chi-square), "
                  f"p {friedman_permutation_p(table):.4f} (permutation); Kendall's W {kendall_w:.2f}")
            print("  mean rank: " + ", ".join(f"{m} {r:.2f}" for m, r in sorted(zip(train, ranks.mean(0)), key=lambda t: t[1])))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "runs")
