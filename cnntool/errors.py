"""Exceptions the command line turns into exit code 2 with a one-line message."""


class ConfigError(ValueError):
    """A usage or configuration problem: bad option value, unknown model, unreadable or mismatched weights."""
