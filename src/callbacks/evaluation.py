"""Scoring during training: the evaluators' training callbacks (src/metrics/: the evaluators themselves).

Every value is logged at the generator step (``eval/<measure>``), the one x-axis of every logger. The
evaluators keep the scores they took (``history``), so the end-of-training score the image callback takes
is the one src.train records: a generator is scored once per step.
"""
import logging

import lightning as L

log = logging.getLogger(__name__)


class EvaluationCallback(L.Callback):
    """IS / FID / KID every ``metrics.every`` generator updates and at the end of training (an ImageEvaluator),
    logged as ``eval/<metric>`` before the loggers are finalized. Under DDP it scores on every rank (the
    evaluation is a collective: src/metrics/distributed.py) and logs from rank 0 only."""

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def _run(self, trainer, module, periodic: bool) -> dict:
        metrics, fresh = self.evaluator.score_at(module, trainer.datamodule, periodic=periodic)
        if fresh and trainer.is_global_zero:
            step = module.g_step
            values = {f"eval/{k}": v for k, v in metrics.items()}
            for logger in trainer.loggers:
                logger.log_metrics({**values, "eval/g_step": step}, step=step)  # the generator step
                logger.save()
            log.info("generator step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        return metrics

    def on_train_start(self, trainer, module) -> None:
        # a run continued with a larger steps= resumes from the checkpoint of its old last step, saved before
        # that step's final score: score the restored G there (the same G, the same fixed noise), or the
        # curve would have a gap
        every, step = self.evaluator.every, module.g_step
        if every and step % every == 0 and 0 < step < module.steps and not any(h["step"] == step for h in self.evaluator.history):
            self._run(trainer, module, periodic=True)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        every, step = self.evaluator.every, module.g_step
        if every and step % every == 0 and 0 < step < module.steps:  # same condition on every rank
            self._run(trainer, module, periodic=True)

    def on_train_end(self, trainer, module) -> None:
        self._run(trainer, module, periodic=False)

    # the scores taken so far travel in checkpoints, so a resumed run's summary holds the whole curve
    def state_dict(self) -> dict:
        return {"history": list(self.evaluator.history), "periodic_seconds": self.evaluator.periodic_seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.evaluator.history = list(state_dict.get("history", []))
        self.evaluator.periodic_seconds = float(state_dict.get("periodic_seconds", 0.0))


class ToyEvaluationCallback(L.Callback):
    """Scores the generator every ``evaluator.every`` generator updates and logs ``eval/<measure>`` at the
    generator step. The history travels in checkpoints, so a resumed run's summary holds the whole curve."""

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def on_train_start(self, trainer, module) -> None:
        # a resumed run restarts at the step where the previous segment's final score was taken after its
        # last checkpoint: the restored G is that G, so score it again rather than leave a gap in the curve
        self._score(trainer, module, last=module.steps)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._score(trainer, module, last=module.steps - 1)

    def _score(self, trainer, module, last: int) -> None:
        ev, step = self.evaluator, module.g_step
        if not (ev.every and step % ev.every == 0 and 0 < step <= last):
            return
        if ev.history and ev.history[-1]["step"] >= step:
            return  # already scored (the last D update of this generator step, or before a resume)
        metrics = ev.score_module(module)
        ev.history.append({"step": step, **metrics})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({f"eval/{k}": float(v) for k, v in metrics.items()}, step=step)

    def state_dict(self) -> dict:
        return {"history": list(self.evaluator.history)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.evaluator.history = list(state_dict.get("history", []))


__all__ = ["EvaluationCallback", "ToyEvaluationCallback"]
