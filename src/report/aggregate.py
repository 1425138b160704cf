"""From runs to the comparison: methods x settings cells, the best setting per method, status counts.

A *method* is the summary's ``method`` (a weight-side regularizer and the penalty added to it, e.g.
"sn+r1"; summaries written before that key give their ``regularizer``), qualified by what else varies
with it in the collection (its loss when it was run with several, the architecture when several were, other swept overrides such as
``regularizer.lam``). A *setting* is an optimizer setting (A-F, resnet, ...), qualified by the
fields that vary under one name (the n_dis grid gives "D (n_dis=1)", "D (n_dis=2)", ...).
Scores are mean +- sample std (ddof=1) over the completed runs of a cell (the seeds).
"""
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from .collect import Run

DIRECTIONS = {"fid": "min", "kid_mean": "min", "sliced_wasserstein": "min",
              "is_mean": "max", "modes_covered": "max", "high_quality_fraction": "max"}
# --metric auto takes the first of these any run has: FID, else IS, else the toy measures.
AUTO_ORDER = ["fid", "is_mean", "modes_covered", "sliced_wasserstein", "kid_mean", "high_quality_fraction"]
REGULARIZER_ORDER = ["none", "sn", "sn_conv", "weight_clip", "wgan_gp", "dragan", "weight_norm", "orthonormal",
                     "batch_norm", "layer_norm"]
STATUSES = ["completed", "diverged", "failed", "interrupted", "running", "missing", "unreadable"]


@dataclass
class Stat:
    mean: float | None
    std: float | None
    n: int

    @staticmethod
    def of(values) -> "Stat":
        v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
        if len(v) == 0:
            return Stat(None, None, 0)
        return Stat(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None, len(v))


@dataclass
class Group:
    """Everything the report shows for one dataset."""
    data: str
    metric: str | None
    direction: str | None
    shown: list[str]                       # metric columns, primary first
    methods: list[str]
    settings: list[str]
    cells: dict = field(default_factory=dict)     # (method, setting) -> {metric: Stat}
    status: dict = field(default_factory=dict)    # (method, setting) -> Counter of statuses
    best: list[dict] = field(default_factory=list)
    timing: dict = field(default_factory=dict)    # (method, n_dis) -> Stat of sec_per_step
    protocols: list[tuple[dict, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)   # (method, setting, one line) of failed runs
    method_of: dict = field(default_factory=dict)  # method -> {"regularizer", "penalty", "loss", "arch"}


def parse_metric(spec: str) -> tuple[str, str | None]:
    """'fid' -> ('fid', 'min'); 'my_score:max' -> ('my_score', 'max'); 'auto' -> ('auto', None)."""
    name, _, direction = spec.partition(":")
    if direction and direction not in ("min", "max"):
        raise ValueError(f"--metric {spec!r}: the direction after ':' must be min or max")
    if name != "auto" and not direction:
        direction = DIRECTIONS.get(name)
        if direction is None:
            raise ValueError(f"--metric {name!r} has no known direction; write {name}:min or {name}:max")
    return name, direction or None


def _fmt_num(v) -> str:
    return "?" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def base_method(r: Run) -> str:
    """What is compared: the summary's method (regularizer + penalty), else its regularizer."""
    return str(r.base_method or r.regularizer)


def _label_methods(runs: list[Run]) -> None:
    losses, archs = defaultdict(set), {r.arch for r in runs}
    for r in runs:
        losses[base_method(r)].add(r.loss)
    keys = sorted({k for r in runs for k in r.extra})
    varying = [k for k in keys if len({r.extra.get(k) for r in runs}) > 1]
    steps_vary = _steps_vary_within_a_setting(runs)
    for r in runs:
        label = base_method(r)
        if len(losses[label]) > 1:
            label += f" + {r.loss}"
        if len(archs) > 1:
            label += f" [{r.arch}]"
        quals = [f"{k}={r.extra[k]}" for k in varying if k in r.extra]
        if steps_vary and r.steps_planned is not None:
            quals.append(f"steps={r.steps_planned}")
        if quals:
            label += f" ({', '.join(quals)})"
        r.method = label


def _steps_vary_within_a_setting(runs: list[Run]) -> bool:
    """Whether one setting holds runs of different lengths (None: a job that left no record of it). A length
    per setting (a study's ``steps_by_setting``) labels the settings instead; lengths that differ inside a
    setting label the methods, so runs of different lengths never share a cell."""
    lengths = defaultdict(set)
    for r in runs:
        lengths[r.optim].add(r.steps_planned)
    return any(len(v - {None}) > 1 for v in lengths.values())


def _label_settings(runs: list[Run]) -> None:
    fields = ("lr", "beta1", "beta2", "n_dis")
    by_name = defaultdict(set)
    for r in runs:
        by_name[r.optim].add(tuple(getattr(r, f) for f in fields))
    steps_label = len({r.steps_planned for r in runs} - {None}) > 1 and not _steps_vary_within_a_setting(runs)
    for r in runs:
        variants = by_name[r.optim]
        differing = [f for i, f in enumerate(fields) if len({v[i] for v in variants} - {None}) > 1]
        quals = [f"{f}={_fmt_num(getattr(r, f))}" for f in differing]
        if steps_label and r.steps_planned is not None:
            quals.append(f"steps={r.steps_planned}")
        r.setting = str(r.optim) + (f" ({', '.join(quals)})" if quals else "")


def _none_last(v):
    return (v is None, v if v is not None else 0)


def _order_methods(runs: list[Run]) -> list[str]:
    first = {}
    for r in runs:
        reg = REGULARIZER_ORDER.index(r.regularizer) if r.regularizer in REGULARIZER_ORDER else len(REGULARIZER_ORDER)
        key = (reg, str(r.regularizer), base_method(r), str(r.arch), str(r.loss), r.method)
        first[r.method] = min(first.get(r.method, key), key)
    return sorted(first, key=first.get)


def _order_settings(runs: list[Run]) -> list[str]:
    first = {}
    for r in runs:
        key = (str(r.optim), _none_last(r.n_dis), _none_last(r.lr), _none_last(r.beta1), _none_last(r.beta2), r.setting)
        first[r.setting] = min(first.get(r.setting, key), key)
    return sorted(first, key=first.get)


def _auto_metric(runs: list[Run], present: set) -> tuple[str | None, list[str]]:
    """The first of AUTO_ORDER that separates the runs (not one value in every completed run: a column of
    zeros, or of 8 modes out of 8, ranks nothing), with notes saying what was passed over and why."""
    candidates = [m for m in AUTO_ORDER if m in present]
    if not candidates:
        return None, ["no run has a score (FID, IS or the toy measures): the table shows status counts only"]
    done = [r for r in runs if r.status == "completed"]
    constant = {}
    for m in candidates:
        values = [r.metrics[m] for r in done if m in r.metrics]
        if len(values) > 1 and len(set(values)) == 1:
            constant[m] = values[0]
    chosen = next((m for m in candidates if m not in constant), None)
    skipped = candidates[:candidates.index(chosen)] if chosen else candidates
    if not skipped:
        return chosen, []
    same = ", ".join(f"{m} = {_fmt_num(constant[m])}" for m in skipped)
    if chosen:
        return chosen, [f"primary metric {chosen}: every completed run has {same}, which cannot rank the methods "
                        f"(choose another with --metric)"]
    return candidates[0], [f"no metric separates the runs: every completed run has {same}"]


def build_group(data: str, runs: list[Run], metric_spec: str = "auto") -> Group:
    _label_methods(runs)
    _label_settings(runs)
    present = {m for r in runs if r.status == "completed" for m in r.metrics}
    name, direction = parse_metric(metric_spec)
    notes = []
    if name == "auto":
        name, notes = _auto_metric(runs, present)
        direction = DIRECTIONS.get(name)
    elif name not in present:
        notes.append(f"metric {name!r} is in no completed run of data={data}")
    shown = ([name] if name else []) + [m for m in AUTO_ORDER if m in present and m != name]
    g = Group(data=data, metric=name, direction=direction, shown=shown,
              methods=_order_methods(runs), settings=_order_settings(runs), notes=notes)

    by_cell = defaultdict(list)
    for r in runs:
        by_cell[(r.method, r.setting)].append(r)
        g.method_of.setdefault(r.method, {"regularizer": r.regularizer, "penalty": r.penalty, "loss": r.loss,
                                          "arch": r.arch})
    for key, cell in by_cell.items():
        done = [r for r in cell if r.status == "completed"]
        g.cells[key] = {m: Stat.of(r.metrics.get(m) for r in done) for m in shown}
        g.status[key] = Counter(r.status for r in cell)
        g.errors += [(key[0], key[1], f"{r.path}: {r.status}: {r.error}") for r in cell
                     if r.status in ("failed", "diverged") and r.error]
    no_metric = sum(1 for r in runs if r.status == "completed" and name and name not in r.metrics)
    if no_metric and name in present:
        notes.append(f"{no_metric} completed run(s) have no {name} (scored with another protocol, or metrics=none)")

    g.best = [_best_row(g, method) for method in g.methods]

    timing = defaultdict(list)
    for r in runs:
        if r.sec_per_step is not None:
            timing[(r.method, r.n_dis)].append(r.sec_per_step)
    g.timing = {k: Stat.of(v) for k, v in timing.items()}

    protocols = Counter(json.dumps(protocol_of(r), sort_keys=True) for r in runs if r.status == "completed" and r.eval_protocol)
    g.protocols = [(json.loads(p), n) for p, n in protocols.most_common()]
    if len(g.protocols) > 1:
        notes.append("runs were scored under different evaluation protocols: their numbers are not comparable")
    return g


# eval_protocol entries that say how long scoring took or where its files sat on the machine that ran it,
# not what was measured (the feature network is identified by weights_sha256): two runs differing only in
# these were scored alike
NOT_PROTOCOL = ("periodic_eval_sec", "weights_path", "real_stats_cache")


def protocol_of(run: Run) -> dict:
    """The part of a run's eval_protocol that decides whether its scores compare with another run's."""
    return {k: v for k, v in run.eval_protocol.items() if k not in NOT_PROTOCOL}


def _best_row(g: Group, method: str) -> dict:
    totals = Counter()
    for s in g.settings:
        totals.update(g.status.get((method, s), Counter()))
    row = {"method": method, **g.method_of[method], "best_setting": None, "scores": {},
           "runs": sum(totals.values()), "status": totals}
    if not g.metric:
        return row
    sign = 1.0 if g.direction == "min" else -1.0
    tiebreak = [m for m in g.shown[1:]]
    candidates = []
    for i, s in enumerate(g.settings):
        cell = g.cells.get((method, s))
        if not cell or cell[g.metric].n == 0:
            continue
        key = [sign * cell[g.metric].mean]
        for m in tiebreak:  # equal primary means (e.g. modes covered) fall back to the next measure
            st = cell[m]
            key.append(math.inf if st.mean is None else (1.0 if DIRECTIONS.get(m) == "min" else -1.0) * st.mean)
        st = g.status[(method, s)]
        key += [-(st["completed"] / max(1, sum(st.values()))), i]
        candidates.append((key, s))
    if candidates:
        _, best = min(candidates)
        row["best_setting"] = best
        row["scores"] = g.cells[(method, best)]
        row["best_status"] = g.status[(method, best)]
    return row


def build_groups(runs: list[Run], metric_spec: str = "auto") -> list[Group]:
    by_data = defaultdict(list)
    for r in runs:
        by_data[str(r.data)].append(r)
    return [build_group(d, by_data[d], metric_spec) for d in sorted(by_data)]
