"""What a run ran on: the code's commit, the libraries, the processor and threads (summary.json "provenance").

Training is deterministic on one machine, not across processors (other CPU kernels round differently), so a
job's scores reproduce only where its record says it ran. One entry per training segment: a run resumed on
another machine or at another commit says so.
"""
import datetime
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):  # no git (a container image), or a hung filesystem
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict:
    """The commit of the checkout src/ belongs to and whether tracked files differ from it (None: not a git checkout)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(changes) if changes is not None else None}


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(from_step: int) -> dict:
    """This segment's record: the code, libraries, processor, accelerator and threads it trains with."""
    import lightning
    import torch

    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"from_step": int(from_step),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            **code_version(),
            "python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "cpu": processor(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            # the vector instructions ATen's CPU kernels dispatch to (AVX2, AVX512, ...): kernels of another width
            # sum in another order, so the same seed takes another trajectory
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "accelerator": accelerator}
