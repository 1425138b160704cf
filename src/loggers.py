"""Closing the run's loggers: the final summary goes to each, and W&B runs are finished.

Under Hydra multirun every job runs in the same process: without wandb.finish() all jobs would log
into the first job's W&B run.
"""


def finish_loggers(loggers, summary: dict) -> None:
    for logger in loggers or []:
        final = {f"final/{k}": v for k, v in (summary.get("metrics") or {}).items() if isinstance(v, (int, float))}
        if final:
            try:
                logger.log_metrics(final)
            except Exception:
                pass
        if type(logger).__name__ == "WandbLogger":
            import wandb

            if wandb.run is not None:
                wandb.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str)) or v is None})
                wandb.finish(exit_code=0 if summary.get("status") == "completed" else 1)
