"""Spectral analyses, one command each (figures + CSV into --out):

* ``python -m src.analysis.power_iteration_convergence --out DIR``: error of the reshaped and
  conv-true power-iteration estimates against the exact operator norm, per iteration, on random
  convolutions at image sizes 64 and 32.
* ``python -m src.analysis.critic_landscapes --out DIR``: D's value over the plane with data and
  samples after a short 2-D toy run, one panel per regularizer in conf/regularizer/.
* ``python -m src.analysis.training_spectra --out DIR [overrides]``: trains one run per
  regularizer with the spectral monitor on and compares sigma trajectories, spectra (rank
  deficiency) and D's gradient norms across them.
"""
