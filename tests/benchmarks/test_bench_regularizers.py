"""benchmarks/bench_regularizers: where its tables go (a subset never overwrites the full table) and its
ratios, with timed runners replaced by fixed times (the benchmark itself is run by hand, not in the suite)."""
import logging
import re

import pytest

import benchmarks._report as report
import benchmarks.bench_regularizers as bench

FULL = "<!-- BEGIN regularizers -->\n## full table\n| sn | 1.044 |\n<!-- END regularizers -->"


class FixedRunner:
    """Each generator update takes `cost` seconds of wall and CPU time, times n_dis."""

    def __init__(self, cost):
        self.cost, self.n_dis = cost, 1

    def set_n_dis(self, n_dis):
        self.n_dis = n_dis

    def run(self, steps):
        return [(self.cost * self.n_dis, self.cost * self.n_dis)] * steps


@pytest.fixture
def doc(tmp_path, monkeypatch):
    path = tmp_path / "benchmarks.md"
    path.write_text(report.HEADER + "\n" + FULL + "\n")
    monkeypatch.setattr(report, "DOC", path)
    costs = {"none": 2.0, "sn": 2.5, "plain none": 1.0}
    monkeypatch.setattr(bench, "make_runner", lambda name: FixedRunner(costs[name]))
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    yield path
    lightning_log.setLevel(level)  # main() quiets Lightning for its own process; later tests here read its log


def test_a_subset_run_writes_its_own_section_and_leaves_the_full_table(doc, capsys):
    bench.main(["--only", "sn", "--reps", "2", "--n-dis", "1", "5"])
    text = doc.read_text()
    assert FULL in text  # untouched
    subset = re.search(r"<!-- BEGIN regularizers-subset -->(.*?)<!-- END regularizers-subset -->", text, re.S).group(1)
    assert "`python -m benchmarks.bench_regularizers --only sn --reps 2 --n-dis 1 5`" in subset  # the command as run
    row = next(line for line in subset.splitlines() if line.startswith("| sn |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # 2.5 s / 2.0 s per update: 1.25x none in CPU and wall, at both n_dis; seconds per update scale with n_dis
    assert cells[1:4] == ["1.250", "1.250", "2.50"] and cells[4:7] == ["1.250", "1.250", "12.50"]
    assert cells[7] == "≤ 1.05× none"
    bench.main(["--only", "sn", "--reps", "1", "--n-dis", "1"])  # a second subset replaces the first
    assert doc.read_text().count("<!-- BEGIN regularizers-subset -->") == 1


def test_an_unknown_row_is_one_line_naming_it(doc, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--only", "sn", "spectral"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'spectral'" in err and "sn_gram" in err and "r1 every=16" in err
    assert doc.read_text() == report.HEADER + "\n" + FULL + "\n"
