"""Training callbacks: sample snapshots, loss curves, timing, checkpoints."""
from .checkpoint import GeneratorStepCheckpoint
from .loss_plot import LossCurves, plot_losses
from .samples import SampleSnapshots, save_grid, scatter_plot
from .timing import StepTimer

__all__ = ["GeneratorStepCheckpoint", "LossCurves", "plot_losses", "SampleSnapshots", "save_grid", "scatter_plot", "StepTimer"]
