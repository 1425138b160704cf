"""Files that are either whole or absent: written to a temporary name in the same folder, then renamed.

A kill or a full disk during the write leaves the previous version (or nothing) plus, at worst, a
temporary ``.<name>.tmp<pid>`` that the next run in the directory removes (src/train.py).
"""
import os
from pathlib import Path


def write_atomic(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
