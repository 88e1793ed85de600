"""Where outputs go: folders made and proven writable before a command does any work (a run that decodes,
trains or draws for an hour must not end in a traceback because --out names a path under a file), outputs
that are never one of the command's inputs, and writes that are atomic (a temporary file renamed into place,
removed again if the write fails: a crash or a full disk leaves the old file or the new one, never half)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

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


def temporary_beside(path: Path) -> Path:
    """An empty temporary file in `path`'s folder, readable as any new file of the user's is (mkstemp makes it
    private, which would survive the rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)
    os.close(fd)
    return Path(tmp)


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call write(temporary path) beside `path`, then rename it into place."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def save_image(image: Any, path: str | Path, **options: Any) -> Path:
    """A PIL image written atomically, in the format its suffix names."""
    kind = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower(), "PNG")
    return write_atomic(path, lambda tmp: image.save(tmp, format=kind, **options))


def input_paths(*sources: Any) -> list[Path]:
    """Every existing path named by the given values or by the str/Path fields of the given configs (nested
    ones too): what a command reads, which no output may replace."""
    found: list[Path] = []
    for source in sources:
        if dataclasses.is_dataclass(source):
            found += input_paths(*(getattr(source, f.name) for f in dataclasses.fields(source)))
        elif isinstance(source, (list, tuple)):
            found += input_paths(*source)
        elif isinstance(source, (str, Path)) and str(source) and Path(source).exists():
            found.append(Path(source))
    return found


def refuse_overwriting(outputs: Mapping[str, str | Path | None], inputs: Iterable[Path]) -> None:
    """ConfigError (exit 2, before any work) when an output would replace one of the inputs."""
    inputs = list(inputs)
    for option, output in outputs.items():
        if output is None or not Path(output).exists():
            continue
        for given in inputs:
            if os.path.samefile(output, given):
                raise ConfigError(f"{option} {output}: that is an input of this command; cnntool never writes over "
                                  "an input (name another file)")


class ImageDirectory:
    """A directory this run writes images into: PNGs named after their inputs, each written atomically and
    never over an existing file (an input, an earlier run's output, or two inputs of one name: the later ones
    become NAME-2.png, NAME-3.png …)."""

    def __init__(self, directory: Path, option: str) -> None:
        self.directory = writable_folder(directory, option)

    def write(self, source: str, image) -> Path:
        stem = Path(source).stem or "image"
        tmp = temporary_beside(self.directory / stem)
        try:
            image.save(tmp, format="PNG")
            n = 1
            while True:
                target = self.directory / (f"{stem}.png" if n == 1 else f"{stem}-{n}.png")
                try:
                    _place_new(Path(tmp), target)
                    return target
                except FileExistsError:
                    n += 1
        finally:
            Path(tmp).unlink(missing_ok=True)


def _place_new(tmp: Path, target: Path) -> None:
    """Put the finished file `tmp` at `target`, which must not exist yet (FileExistsError otherwise)."""
    try:
        os.link(tmp, target)  # unlike rename, link fails rather than replace a file that is there
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: claim the name first, then rename over the claim
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, target)
