"""``python -m src.report <multirun dir> [more dirs] [--out DIR] [--metric NAME[:min|max]]``

Reads every summary.json below the given dirs (and notes job dirs that have none), and writes the
comparison into the output dir (default: <first dir>/report): report.md (best setting per method as
in the SN paper's Table 2, scores per setting, run status, time per generator update), CSV files
(best.csv, cells.csv, status.csv, timing.csv, runs.csv, missing_jobs.csv) and figures/*.png
(scores per setting as in Figs. 1-2, time per generator update as in Fig. 10).
"""
from pathlib import Path

from .aggregate import build_groups
from .collect import collect
from .figures import write_figures
from .render import markdown, write_csvs


def build_report(dirs, out=None, metric: str = "auto", command: str | None = None) -> dict:
    """Write the report; returns {'out': dir, 'markdown': path, 'csv': [...], 'figures': [...], 'groups': [...]}."""
    dirs = [Path(d) for d in dirs]
    out = Path(out) if out else dirs[0] / "report"
    coll = collect(dirs)
    # a job dir with neither summary nor saved config cannot be placed in a table; 'Partial sweeps' lists it
    groups = build_groups([r for r in coll.runs if r.data is not None or r.regularizer is not None], metric)
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(out, groups)
    csvs = write_csvs(out, groups, coll)
    command = command or "python -m src.report " + " ".join(map(str, dirs))
    md = out / "report.md"
    md.write_text(markdown(groups, coll, [str(d) for d in dirs], figures, command))
    return {"out": out, "markdown": md, "csv": csvs, "figures": [p for ps in figures.values() for p in ps],
            "groups": groups, "collection": coll}


__all__ = ["build_report", "collect", "build_groups"]
