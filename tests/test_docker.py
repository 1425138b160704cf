"""The Dockerfile (no Docker engine runs here): hadolint passes and it installs the project from its own files."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"


def hadolint():
    exe = Path(sys.executable).parent / "hadolint"
    return str(exe) if exe.exists() else shutil.which("hadolint")


def test_hadolint_passes():
    exe = hadolint()
    if exe is None:
        pytest.fail("hadolint is not installed: it comes with the dev extra (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_installs_the_project_and_runs_train():
    text = DOCKERFILE.read_text()
    assert text.startswith("#") and "FROM nvidia/cuda:" in text
    for needed in ("COPY pyproject.toml", "COPY src", "COPY conf", "pip install ."):
        assert needed in text
    assert 'ENTRYPOINT ["python", "-m", "src.train"]' in text
