"""The collectives of a DDP evaluation: every rank enters every evaluation, and an error on one rank is
exchanged with the others before the next collective, so every rank raises instead of waiting forever.
Single process (no initialized process group, or world size 1): each function is its plain local form."""
import torch

from ..errors import UserError


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialized default process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def comm_device() -> torch.device:
    """Where collective buffers live: the current CUDA device under NCCL, else the CPU (gloo)."""
    import torch.distributed as dist

    if "nccl" in str(dist.get_backend()).lower() and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather(t: torch.Tensor) -> list[torch.Tensor]:
    import torch.distributed as dist

    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return out


def _error_text(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def raise_remote(errors: dict, what: str):
    """Raise, on a rank that did not fail itself, what the failed ranks reported: {rank: (message, is a
    user error)}. User errors stay user errors (one line in the summary, exit status 2)."""
    first = min(errors)
    msg, user = errors[first]
    text = f"{what} failed on rank {first}: {msg}"
    if len(errors) > 1:
        text += f" (and on ranks {sorted(errors)[1:]})"
    raise (UserError if user else RuntimeError)(text)


def on_all_ranks(fn, what: str = "evaluation"):
    """fn() on every rank, then an agreement: when it raised anywhere, every rank raises (the failing rank
    its own exception), so no rank is left waiting in the next collective. Single process: just fn()."""
    rank, world = dist_info()
    if world == 1:
        return fn()
    import torch.distributed as dist

    error, value = None, None
    try:
        value = fn()
    except Exception as exc:  # re-raised below, after the other ranks know
        error = exc
    reports = [None] * world
    dist.all_gather_object(reports, None if error is None else (_error_text(error), isinstance(error, UserError)))
    if error is not None:
        raise error
    failed = {r: rep for r, rep in enumerate(reports) if rep is not None}
    if failed:
        raise_remote(failed, what)
    return value


def from_rank0(fn, what: str = "evaluation"):
    """fn() on rank 0 only, its (small, picklable) result broadcast to every rank; an exception on rank 0
    is raised on every rank. Single process: just fn()."""
    rank, world = dist_info()
    if world == 1:
        return fn()
    import torch.distributed as dist

    error, box = None, [None]
    if rank == 0:
        try:
            box = [("ok", fn())]
        except Exception as exc:  # raised on every rank below
            error, box = exc, [("error", _error_text(exc), isinstance(exc, UserError))]
    dist.broadcast_object_list(box, src=0, device=comm_device())
    if error is not None:
        raise error
    if box[0][0] == "error":
        raise_remote({0: box[0][1:]}, what)
    return box[0][1]


def sync_from_rank0(module: torch.nn.Module) -> None:
    """Broadcast a module's parameters and buffers from rank 0. DDP keeps the parameters equal, but BN
    running statistics are updated by each rank's own batches after DDP's last buffer broadcast, and the
    checkpoints (and so ``python -m src.evaluate``) hold rank 0's. DDP (broadcast_buffers, its default)
    broadcasts rank 0's buffers before its next forward anyway, so this changes nothing for training."""
    import torch.distributed as dist

    device = comm_device()
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            buf = t.detach() if t.device == device else t.detach().to(device)
            dist.broadcast(buf, src=0)
            if buf.data_ptr() != t.data_ptr():
                t.copy_(buf)


__all__ = ["dist_info", "on_all_ranks", "from_rank0", "sync_from_rank0", "all_gather", "comm_device", "raise_remote"]
