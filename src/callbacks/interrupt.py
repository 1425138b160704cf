"""SIGTERM / SIGINT end a run cleanly: a checkpoint at the current generator step, then status "interrupted".

Schedulers (SLURM time limits, preemption), ``timeout``, ``docker stop`` and Ctrl+C send these signals.
:class:`InterruptGuard` owns the handlers for the whole run. While training is inside a generator
step the signal is only recorded: :class:`StopAtStepBoundary` then saves ``last.ckpt`` at the end of
that step (the same point where periodic checkpoints are taken, so a resumed run continues bit for
bit) and raises :class:`RunInterrupted`. Outside the training loop (building, the final evaluation)
the handler raises at once: nothing there needs saving. A second signal while a step is finishing
forces the stop at once (the previous checkpoint stays the newest).

Lightning installs its own SIGTERM handler during fit. It sets a flag that its loops check at the end
of each batch, after the callbacks' ``on_train_batch_end``, and then end fit with a bare ``SystemExit``
(exit status 0). A signal that landed between our check and theirs therefore ended the run as a
success, with no checkpoint at that step and the summary left "running". For the length of fit,
:class:`StopAtStepBoundary` hands SIGTERM to the guard alone and keeps the one thing Lightning's
handler does that we need: forwarding the signal to the DDP processes its launcher started.

Between the jobs of a sweep (a joblib worker waiting for its next job, or a sequential sweep's
process between two jobs), :func:`hold_signals_between_runs` records a signal instead of letting it
end the process. An idle joblib worker killed by SIGTERM made joblib shut the pool down, which killed
the busy worker beside it before it reached its checkpoint. A signal received while idle stops the
process's next run before that run starts; a second one ends the idle process at once, and a worker
whose launcher has died ends on its own.
"""
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received_between_runs: int | None = None  # a signal that arrived while this process ran no job
_between_runs = threading.Event()  # set from the end of a sweep's job to the start of this process's next run


def _record_between_runs(signum, frame) -> None:
    global _received_between_runs
    if _received_between_runs is not None:  # asked twice: nothing to save, end now
        os._exit(128 + signum)
    _received_between_runs = signum
    log.warning("received %s between runs: this process's next run stops before it starts (send it again to "
                "end the process now)", signal.Signals(signum).name)


def _end_when_orphaned(launcher_pid: int) -> None:
    """A worker whose launcher died gets no next job and can sit blocked handing its last result to a process
    that is gone (a lock wait, where no Python signal handler runs): end it from a thread instead."""
    while True:
        time.sleep(1.0)
        if _between_runs.is_set() and os.getppid() != launcher_pid:
            os._exit(0)


def hold_signals_between_runs() -> None:
    """After a sweep's job, in a process that may run another: record SIGTERM / SIGINT rather than die."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _record_between_runs)
    _between_runs.set()
    launcher = multiprocessing.parent_process()  # a joblib (loky) worker's launcher; None in a sweep's own process
    if launcher is not None and not any(t.name == "end-when-orphaned" for t in threading.enumerate()):
        threading.Thread(target=_end_when_orphaned, args=(launcher.pid,), name="end-when-orphaned",
                         daemon=True).start()


class RunInterrupted(Exception):
    """The run was stopped by a signal; ``step`` generator updates are done and checkpointed."""

    def __init__(self, signum: int, saved: bool = False, step: int | None = None):
        self.signum, self.saved, self.step = signum, saved, step
        name = signal.Signals(signum).name
        where = f" at generator step {step}" if step is not None else ""
        super().__init__(f"interrupted by {name}{where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for "ended by signal N"


class InterruptGuard:
    """Installs handlers for SIGTERM and SIGINT for the duration of a ``with`` block (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self.deferred = False  # True inside the training loop: stop at the next step boundary
        self._previous = {}

    def handle(self, signum, frame):
        first = self.signum is None
        self.signum = signum
        if self.deferred and first:
            log.warning("received %s: stopping after the current generator step (send it again to stop at once)",
                        signal.Signals(signum).name)
            return
        raise RunInterrupted(signum)

    def __enter__(self):
        global _received_between_runs
        _between_runs.clear()
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self.handle)
        if _received_between_runs is not None:  # asked to stop while idle: this run does not start
            self.signum, _received_between_runs = _received_between_runs, None
            self.__exit__()
            raise RunInterrupted(self.signum)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        return False


class StopAtStepBoundary(L.Callback):
    """Turns a signal recorded by the guard into a checkpoint at the end of the current generator step."""

    def __init__(self, guard: InterruptGuard, last_path: Path):
        self.guard, self.last_path = guard, Path(last_path)

    def on_train_start(self, trainer, module) -> None:
        self.guard.deferred = True
        self._take_sigterm_from_lightning(trainer)
        if self.guard.signum is not None:  # arrived while Lightning was setting up: nothing trained yet
            raise RunInterrupted(self.guard.signum, step=module.g_step)

    def _take_sigterm_from_lightning(self, trainer) -> None:
        """Replace the handler Lightning's fit installed (see the module docstring); its teardown restores the guard's."""
        if threading.current_thread() is not threading.main_thread():
            return
        launcher, guard = trainer.strategy.launcher, self.guard

        def handle(signum, frame):
            if guard.signum is None and launcher is not None:
                launcher.kill(signum)  # DDP: the processes Lightning started stop at their step's end too
            guard.handle(signum, frame)

        signal.signal(signal.SIGTERM, handle)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.guard.signum is None:
            return
        step = module.g_step
        trainer.save_checkpoint(self.last_path)
        log.warning("checkpoint saved at generator step %d: %s", step, self.last_path)
        raise RunInterrupted(self.guard.signum, saved=True, step=step)

    def on_train_end(self, trainer, module) -> None:
        self.guard.deferred = False

    def on_exception(self, trainer, module, exception) -> None:
        self.guard.deferred = False
