"""Checkpoint files written atomically and read safely.

Lightning's TorchCheckpointIO writes straight to the target path, so a job killed during a save
leaves a truncated last.ckpt; we write to a temporary file in the same folder and os.replace() it,
and load with torch.load(weights_only=True): checkpoints hold tensors and plain containers only.
"""
import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .errors import UserError


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            torch.save(checkpoint, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint_file(path, map_location)


def load_checkpoint_file(path, map_location="cpu") -> dict:
    """torch.load(weights_only=True) with a one-line error for truncated or foreign files."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise UserError(f"checkpoint {path} cannot be read ({type(exc).__name__}: truncated, corrupt or not a checkpoint of this lab)") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"checkpoint {path} is not a Lightning checkpoint of this lab (no state_dict)")
    return checkpoint
