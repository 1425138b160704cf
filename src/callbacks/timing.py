"""Wall time per generator update (the SN paper's Fig. 10 measure)."""
import time

import lightning as L


class StepTimer(L.Callback):
    def __init__(self):
        self.start = None
        self.start_step = 0
        self.total_sec = 0.0
        self.steps = 0

    def on_train_start(self, trainer, module) -> None:
        self.start, self.start_step = time.perf_counter(), module.g_step

    def on_train_end(self, trainer, module) -> None:
        if self.start is not None:
            self.total_sec = time.perf_counter() - self.start
            self.steps = module.g_step - self.start_step

    @property
    def sec_per_step(self):
        return self.total_sec / self.steps if self.steps else None
