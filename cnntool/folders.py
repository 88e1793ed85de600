"""Output folders, made and proven writable before a command does any work: a run that decodes, trains or
draws for an hour must not end in a traceback because --out names a path under a file."""

from __future__ import annotations

import os
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


class ImageDirectory:
    """A directory this run writes images into: PNGs named after their inputs, never overwriting an
    earlier output of the same run (two inputs may share a file name), each written atomically."""

    def __init__(self, directory: Path, option: str) -> None:
        self.directory = writable_folder(directory, option)
        self._used: set[str] = set()

    def write(self, source: str, image) -> Path:
        stem = Path(source).stem or "image"
        name, n = f"{stem}.png", 1
        while name in self._used:
            n += 1
            name = f"{stem}-{n}.png"
        self._used.add(name)
        target = self.directory / name
        tmp = target.with_name(f".{name}.tmp")
        image.save(tmp, format="PNG")
        os.replace(tmp, target)
        return target
