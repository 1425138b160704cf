"""Wall time per generator update (the SN paper's Fig. 10 measure), over the whole run.

The time and the updates of earlier segments of a resumed run travel in the checkpoint (Lightning
saves a callback's ``state_dict``), so a run interrupted and resumed reports the training time of
all its segments, as one uninterrupted run would, and a rerun of a finished run keeps its time.
"""
import time

import lightning as L


class StepTimer(L.Callback):
    def __init__(self):
        self.prior_sec, self.prior_steps, self.prior_segments = 0.0, 0, 0  # earlier segments (checkpoint)
        self._start = self._end = None
        self._start_step = self._end_step = 0
        self._module = None

    def setup(self, trainer, module, stage=None) -> None:
        self._module = module

    def on_train_start(self, trainer, module) -> None:
        self._start, self._start_step, self._end = time.perf_counter(), module.g_step, None

    def _stop(self, module) -> None:
        if self._start is not None and self._end is None:
            self._end, self._end_step = time.perf_counter(), module.g_step

    def on_train_end(self, trainer, module) -> None:
        self._stop(module)

    def on_exception(self, trainer, module, exception) -> None:
        self._stop(module)

    @property
    def total_sec(self) -> float:
        if self._start is None:
            return self.prior_sec
        end = self._end if self._end is not None else time.perf_counter()
        return self.prior_sec + end - self._start

    @property
    def steps(self) -> int:
        if self._start is None:
            return self.prior_steps
        end_step = self._end_step if self._end is not None else (self._module.g_step if self._module else self._start_step)
        return self.prior_steps + end_step - self._start_step

    @property
    def segments(self) -> int:
        return self.prior_segments + (1 if self._start is not None else 0)

    @property
    def sec_per_step(self):
        return self.total_sec / self.steps if self.steps else None

    def state_dict(self) -> dict:
        return {"total_sec": self.total_sec, "steps": self.steps, "segments": self.segments}

    def load_state_dict(self, state: dict) -> None:
        self.prior_sec = float(state.get("total_sec", 0.0))
        self.prior_steps = int(state.get("steps", 0))
        self.prior_segments = int(state.get("segments", 0))
