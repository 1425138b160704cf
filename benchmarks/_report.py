"""Benchmarks write their tables into one section each of docs/benchmarks.md (between markers)."""
import platform
import re
from datetime import date
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun that script to refresh it.\n"


def machine() -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{dev}, torch {torch.__version__}, {date.today().isoformat()}"


def write_section(name: str, title: str, body: str, command: str) -> Path:
    """Replace (or append) the section ``name`` of docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    block = (f"<!-- BEGIN {name} -->\n## {title}\n\nMeasured on {machine()}. Regenerate with `{command}`.\n\n"
             f"{body.strip()}\n<!-- END {name} -->")
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
    return DOC
