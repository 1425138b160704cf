"""R2 gradient penalty (Mescheder, Geiger, Nowozin 2018): gamma/2 * E_fake |grad_x D(x)|^2.

R1 at the generated batch of the same D update instead of the real one; the same lazy schedule
(``every``) and checkpointed counter as R1.
"""
from .r1 import R1


class R2(R1):
    name = "r2"
    default_loss = "ns"
    batch = "fake"  # the generated batch (already detached from G by the training step)
