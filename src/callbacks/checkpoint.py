"""Lightning's ModelCheckpoint, with files named by generator updates rather than optimizer steps.

``last.ckpt`` always holds the generator that the run scores: when ``steps`` is not a multiple of
``checkpoint.every`` the periodic saves stop short of the end, so the end of training saves it too.
"""
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class GeneratorStepCheckpoint(ModelCheckpoint):
    def __init__(self, n_dis: int, every: int, **kwargs):
        # Lightning's global_step counts D and G optimizer steps: n_dis + 1 per generator update
        super().__init__(every_n_train_steps=every * (n_dis + 1) if every else 0,
                         filename="gstep_{g_step:07d}", auto_insert_metric_name=False,
                         enable_version_counter=False, **kwargs)
        self.per_g_step = n_dis + 1

    def format_checkpoint_name(self, metrics, *args, **kwargs):
        metrics = dict(metrics)
        if "step" in metrics:
            metrics["g_step"] = torch.tensor(int(metrics["step"]) // self.per_g_step)
        return super().format_checkpoint_name(metrics, *args, **kwargs)

    @property
    def last_path(self) -> Path:
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def on_train_end(self, trainer, module) -> None:
        super().on_train_end(trainer, module)
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            trainer.save_checkpoint(self.last_path)
            self._last_global_step_saved = trainer.global_step
