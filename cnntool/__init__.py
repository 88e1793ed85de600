"""cnntool: the classic CNN image tasks from the command line."""

from __future__ import annotations


def version() -> str:
    """The installed package's version (what --version, reports and weights metadata say)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("cnntool")
    except PackageNotFoundError:
        return "unknown"
