"""Command-line helpers shared by the entry points: one-line argument errors, help that shows defaults."""
import argparse
import sys


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and appends "(default: X)" to every option that has a default
    (not to required options, nor to defaults of None, whose meaning the help text itself states)."""

    def _get_help_string(self, action):
        if action.required or action.default is None or action.default is argparse.SUPPRESS \
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return action.help or ""
        return super()._get_help_string(action)  # shown only for options with help text: give every option one


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (exit 2), not the usage block."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
