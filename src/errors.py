"""Exceptions that mean "the user asked for something invalid" (one-line message, exit 2)."""


class UserError(Exception):
    """A mistake in the user's input: reported in one line, never as a traceback."""


class ConfigError(UserError):
    """An invalid configuration value."""


class DataError(UserError):
    """Missing, empty or unreadable data."""


class DivergedError(Exception):
    """Training produced non-finite losses or weights."""

    def __init__(self, step: int, what: str):
        super().__init__(f"non-finite {what} at generator step {step}")
        self.step = step


def instantiate(config, **kwargs):
    """hydra.utils.instantiate, but a UserError raised by the target surfaces as itself.

    Hydra wraps constructor exceptions in InstantiationException; a user's mistake (say, a resolution
    the arch cannot take) must still reach them as its own one-line message.
    """
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(config, **kwargs)
    except Exception as exc:
        cause = exc
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
