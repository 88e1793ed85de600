"""cnntool: the classic CNN image tasks from the command line."""

__version__ = "0.1.0"
