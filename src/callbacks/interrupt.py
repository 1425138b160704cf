"""SIGTERM / SIGINT end a run cleanly: a checkpoint at the current generator step, then status "interrupted".

Schedulers (SLURM time limits, preemption), ``timeout``, ``docker stop`` and Ctrl+C send these signals.
:class:`InterruptGuard` owns the handlers for the whole run. While training is inside a generator
step the signal is only recorded: :class:`StopAtStepBoundary` then saves ``last.ckpt`` at the end of
that step (the same point where periodic checkpoints are taken, so a resumed run continues bit for
bit) and raises :class:`RunInterrupted`. Outside the training loop (building, the final evaluation)
the handler raises at once: nothing there needs saving. A second signal while a step is finishing
forces the stop at once (the previous checkpoint stays the newest).

Lightning installs its own SIGTERM handler during fit, which chains to ours; its handler would end
the fit loop with a bare ``SystemExit(0)`` one step later, but ours raises first.
"""
import logging
import signal
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


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

    def _handle(self, signum, frame):
        first = self.signum is None
        self.signum = signum
        if self.deferred and first:
            log.warning("received %s: stopping after the current generator step (send it again to stop at once)",
                        signal.Signals(signum).name)
            return
        raise RunInterrupted(signum)

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
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
        if self.guard.signum is not None:  # arrived while Lightning was setting up: nothing trained yet
            raise RunInterrupted(self.guard.signum, step=module.g_step)

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
