"""Output folders, made and proven writable before a command does any work: a run that decodes, trains or
draws for an hour must not end in a traceback because --out names a path under a file."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cnntool.errors import ConfigError


def writable_folder(folder: str | Path, option: str) -> Path:
    """Make `folder` (and its parents) and write a scratch file into it; a ConfigError naming `option`
    when either fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{option}: cannot write to {folder} (a file stands where a folder should be)") from None
    except OSError as exc:
        raise ConfigError(f"{option}: cannot write to {folder} ({exc.strerror or exc})") from None
    return folder
