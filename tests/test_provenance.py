"""src/provenance.py outside a git checkout: no commit rather than a wrong one or a crash."""
import src.provenance as provenance


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    assert provenance.code_version() == {"commit": None, "dirty": None}
    record = provenance.describe(from_step=7)
    assert record["from_step"] == 7 and record["commit"] is None and record["cpu"]


def test_without_git_installed_the_commit_is_unknown(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert provenance.code_version() == {"commit": None, "dirty": None}
