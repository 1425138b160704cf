"""One run per run directory: an exclusive lock held for the whole run.

Two jobs writing into one directory (a rerun while the first still trains, two sweeps given the same
hydra.sweep.dir) would mix checkpoints, summaries and configs. The run takes an exclusive ``flock``
on ``<run dir>/.run.lock`` before it writes anything there and keeps it until the process ends. The
file says who holds it (host, pid, start time), so a refused run can name the holder.

Why flock by hand rather than the ``filelock`` package: the kernel drops an flock when its process
dies, however it dies (SIGKILL included), so a lock left by a dead process is taken over without any
staleness heuristics, and the holder's description lives in the locked file itself. filelock's
UnixFileLock uses the same call but truncates the file and gives no access to what it holds.
"""
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from .errors import UserError

LOCK_NAME = ".run.lock"


class RunDirLocked(UserError):
    """Another live process holds the run directory."""


class RunDirLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        self.previous_holder: dict | None = None  # what a stale lock file said (a dead process's)

    def acquire(self) -> "RunDirLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # read-only, no permission, a file where the folder should be
            raise UserError(f"cannot write run directory {self.path.parent} ({exc.strerror}); "
                            "choose a writable hydra.run.dir / hydra.sweep.dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise RunDirLocked(f"run directory {self.path.parent} is in use by {holder}; wait for it to finish, "
                               "or give this run another hydra.run.dir / hydra.sweep.dir") from None
        except OSError as exc:  # a filesystem without flock support: say so rather than run unprotected
            os.close(fd)
            raise UserError(f"cannot lock run directory {self.path.parent} ({exc.strerror}); "
                            "use a run directory on a local or lock-capable filesystem") from None
        previous = _read(fd)
        self.previous_holder = previous or None
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def live_holder(run_dir: Path) -> dict | None:
    """Who holds the run directory, if a live process on this host does (its lock file's host, pid, start).

    Reads the lock file and asks the kernel whether that pid exists; it never takes the lock, since even a
    shared lock held for a moment could make a job starting then refuse its directory. A lock file left by
    a killed process (or truncated by a released lock) names no live process: None.
    """
    try:
        holder = json.loads((Path(run_dir) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return None
    pid = holder.get("pid") if isinstance(holder, dict) else None
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return holder


def _read(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"
