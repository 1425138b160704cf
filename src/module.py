"""The GAN LightningModule: manual optimization, n_dis D updates then one G update.

The module knows nothing about any particular regularizer or loss: it calls the regularizer's three
hooks (wrap once in __init__, penalty in every D step, after_d_step after every D optimizer step).
Real batches are sampled on the device from the datamodule's in-memory tensor with a generator
whose state is checkpointed, as is the noise generator, so resumed runs continue exactly. When the
data streams from disk (data.in_memory=false) each training step's batch from the DataLoader holds
its n_dis real batches instead (the datamodule checkpoints its place in that stream).
"""

import lightning as L
import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import DivergedError
from .losses import GANLoss
from .regularizers.base import Regularizer


class GAN(L.LightningModule):
    def __init__(self, generator: nn.Module, discriminator: nn.Module, regularizer: Regularizer, loss: GANLoss,
                 optim: dict, z_dim: int, batch_size: int, steps: int, seed: int = 0, example_input: torch.Tensor | None = None,
                 log_every: int = 10, n_fixed: int = 64, run_config: dict | None = None, perf: dict | None = None,
                 optimizer=None):
        super().__init__()
        self.automatic_optimization = False
        self.G, self.D = generator, discriminator
        self.regularizer, self.gan_loss = regularizer, loss
        self.optim = dict(optim)
        self.optimizer = optimizer  # params -> torch optimizer (the optim config's partial); None: Adam from optim
        self.n_dis = int(self.optim["n_dis"])
        self.z_dim, self.batch_size, self.steps, self.seed = z_dim, batch_size, steps, seed
        self.log_every = max(1, int(log_every))
        self.run_config = run_config or {}
        self.perf = {"channels_last": False, "compile": False, **(perf or {})}
        self._d_forward, self._g_forward = self.D, self.G  # replaced by compiled versions with perf.compile
        if example_input is not None:
            regularizer.wrap(self.D, example_input)
        gen = torch.Generator().manual_seed(seed + 1)
        self.register_buffer("fixed_z", torch.randn(n_fixed, z_dim, generator=gen))
        self.history: list[dict] = []  # (step, losses) at log steps, for the loss-curve plot
        self._rng: torch.Generator | None = None
        self._rng_state: torch.Tensor | None = None
        self._global_rng_state: dict | None = None

    # ---- randomness ------------------------------------------------------------------------------------
    @property
    def rng(self) -> torch.Generator:
        """One generator on the training device for real-batch indices and noise (checkpointed)."""
        if self._rng is None or self._rng.device != self.device:
            self._rng = torch.Generator(device=self.device)
            self._rng.manual_seed(self.seed + 7919 * self.global_rank)  # distinct batches per DDP rank
            if self._rng_state is not None:
                self._rng.set_state(self._rng_state)
                self._rng_state = None
        return self._rng

    def sample_z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, device=self.device, generator=self.rng)

    def sample_real(self, n: int) -> torch.Tensor:
        return self._layout(self.trainer.datamodule.sample(n, self.rng))

    def _layout(self, real: torch.Tensor) -> torch.Tensor:
        if self.perf["channels_last"] and real.dim() == 4:
            real = real.contiguous(memory_format=torch.channels_last)
        return real

    @property
    def real_per_step(self) -> int:
        """Real samples one training step (n_dis D updates) consumes: the streamed loader's batch size."""
        return self.n_dis * self.batch_size

    def real_batches(self, batch):
        """The n_dis real batches of this step, each fresh: split from the loader's streamed batch, or
        sampled on the device one at a time (lazily, so real indices and noise are drawn in turn)."""
        if isinstance(batch, dict) and "real" in batch:
            real = self.trainer.datamodule.to_float(batch["real"])
            if real.shape[0] != self.real_per_step:
                raise RuntimeError(f"streamed batch holds {real.shape[0]} real samples, a step needs {self.real_per_step}")
            return iter([self._layout(r) for r in real.split(self.batch_size)])
        return (self.sample_real(self.batch_size) for _ in range(self.n_dis))

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """D's outputs for the losses, in float32: under bf16 autocast D runs in bf16, the losses do not
        (a no-op in float32 runs)."""
        return self._d_forward(x).float()

    @property
    def g_step(self) -> int:
        """Generator updates done (Lightning's global_step counts every optimizer step)."""
        return self.trainer.global_step // (self.n_dis + 1) if self._trainer is not None else 0

    # ---- training --------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        from .loggers import log_hyperparams

        if self.trainer.is_global_zero:
            log_hyperparams(self.loggers, self.run_config)
        self.trainer.datamodule.to(self.device)
        if self.perf["channels_last"] and self.trainer.datamodule.is_image:
            self.to(memory_format=torch.channels_last)
        if self.perf["compile"]:
            # parametrizations (SN, WN) are traced into the graph; the penalty's double backward
            # falls back to eager where inductor cannot differentiate twice
            self._d_forward, self._g_forward = torch.compile(self.D), torch.compile(self.G)

    def _restore_global_rng(self) -> None:
        state, self._global_rng_state = self._global_rng_state, None
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def training_step(self, batch, batch_idx):
        if self._global_rng_state is not None:
            self._restore_global_rng()
        opt_d, opt_g = self.optimizers()
        bs = self.batch_size
        for real in self.real_batches(batch):
            with torch.no_grad():
                fake = self._g_forward(self.sample_z(bs))
            # cached(): each parametrized weight (SN, WN, ...) is computed once per D update even
            # though D runs on real, fake and (for penalties) interpolated batches
            with parametrize.cached():
                # R1/R2 in a float32, uncompiled step: D runs once at the penalised batch with input
                # gradients on, for the loss and the penalty (as R1 is written by hand; docs/benchmarks.md)
                at = None if self.perf["compile"] else self.regularizer.input_grad_at()
                if at == "real":
                    real = real.detach().requires_grad_(True)
                elif at == "fake":
                    fake = fake.detach().requires_grad_(True)
                d_real, d_fake = self.critic(real), self.critic(fake)
                d_loss = self.gan_loss.d_loss(d_real, d_fake)
                penalty = (self.regularizer.penalty(self.D, real, fake) if at is None
                           else self.regularizer.penalty_from_forward(self.D, real, fake, d_real, d_fake))
                d_total = d_loss if penalty is None else d_loss + penalty
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d_total)
            opt_d.step()
            self.regularizer.after_d_step(self.D)

        self.D.requires_grad_(False)  # G's update needs no D weight gradients (nor parametrization backward)
        try:
            with parametrize.cached():
                g_loss = self.gan_loss.g_loss(self.critic(self._g_forward(self.sample_z(bs))))
                opt_g.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
        finally:
            self.D.requires_grad_(True)
        opt_g.step()
        for sched in self.lr_schedulers() or []:
            sched.step()

        step = self.g_step
        if self.device.type == "cpu" or step % self.log_every == 0:
            self._check_finite(step, d_loss, g_loss, penalty)
        if step % self.log_every == 0 or step == 1:
            values = {"loss/d": float(d_loss.detach()), "loss/g": float(g_loss.detach())}
            if penalty is not None:
                values["loss/penalty"] = float(penalty.detach())
            self.log_dict(values, on_step=True, prog_bar=True, logger=False)
            # the loggers get them at the generator step, the one x-axis of every logged value
            # (Lightning's own logging step lags it by one and its global_step counts n_dis + 1 per update)
            if self.trainer.is_global_zero:
                for logger in self.loggers:
                    logger.log_metrics(values, step=step)
            self.history.append({"step": step, **values})

    def _check_finite(self, step: int, d_loss, g_loss, penalty) -> None:
        tensors = [d_loss.detach(), g_loss.detach()] + ([penalty.detach()] if penalty is not None else [])
        if not bool(torch.isfinite(torch.stack(tensors)).all()):
            raise DivergedError(step, "loss")

    def configure_optimizers(self):
        o = self.optim
        make = self.optimizer
        if make is None:
            from functools import partial

            make = partial(torch.optim.Adam, lr=float(o["lr"]), betas=(float(o["beta1"]), float(o["beta2"])))
        opt_d, opt_g = make(self.D.parameters()), make(self.G.parameters())
        if o.get("lr_decay", "none") == "linear":
            steps = self.steps
            decay = lambda i: 1.0 - min(i, steps) / steps  # noqa: E731  linear to 0; i = G updates done
            scheds = [torch.optim.lr_scheduler.LambdaLR(opt, decay) for opt in (opt_d, opt_g)]
            return [opt_d, opt_g], scheds
        return [opt_d, opt_g]

    # ---- sampling --------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, batch_size: int = 500, z: torch.Tensor | None = None) -> torch.Tensor:
        """n samples in eval mode (BN running statistics), on the CPU, from fresh or given noise."""
        was_training = self.G.training
        self.G.eval()
        try:
            out = []
            for start in range(0, n, batch_size):
                m = min(batch_size, n - start)
                zz = z[start:start + m].to(self.device) if z is not None else torch.randn(m, self.z_dim, device=self.device)
                out.append(self.G(zz).float().cpu())
            return torch.cat(out) if out else torch.empty(0)
        finally:
            self.G.train(was_training)

    # ---- checkpoints -----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # never write non-finite weights over the last good checkpoint
        for name, p in self.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise DivergedError(self.g_step, f"weights ({name})")
        checkpoint["gan_rng_state"] = self.rng.get_state()
        # the global RNGs too: penalties (interpolation points) and callbacks may draw from them
        checkpoint["global_rng_state"] = {"torch": torch.get_rng_state(),
                                          "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        checkpoint["gan_history"] = list(self.history)
        checkpoint["run_config"] = self.run_config
        checkpoint["regularizer_state"] = self.regularizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._rng_state = checkpoint.get("gan_rng_state")
        self._rng = None
        # restored at the first training step: Lightning draws from the global RNG in between
        self._global_rng_state = checkpoint.get("global_rng_state")
        self.history = list(checkpoint.get("gan_history", []))
        self.regularizer.load_state_dict(checkpoint.get("regularizer_state", {}))


def total_optimizer_steps(steps: int, n_dis: int) -> int:
    """Lightning's max_steps for ``steps`` generator updates (it counts D and G optimizer steps)."""
    return steps * (n_dis + 1)


__all__ = ["GAN", "total_optimizer_steps"]
