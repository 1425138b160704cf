"""Lightning's ModelCheckpoint, with files named by generator updates rather than optimizer steps."""
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
