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
