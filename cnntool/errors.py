"""Exceptions the command line turns into exit code 2 with a one-line message."""


class ConfigError(ValueError):
    """A usage or configuration problem: bad option value, unknown model, unreadable or mismatched weights."""


def first_line(exc: BaseException) -> str:
    """An exception as one line for a user: its message's first line, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
