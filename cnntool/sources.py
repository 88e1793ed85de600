"""Expand command-line inputs into a stable, ordered stream of image paths. stdlib only.

Accepted: files, directories (image files inside, sorted, optionally recursive), glob patterns,
`@list.txt` (one path per line), `-` (one path per line on stdin), and http(s):// URLs (downloaded when
read, with a size cap and a timeout: `fetch`). Order follows the arguments;
within a directory or glob, paths are sorted. An input that names nothing is not fatal: it is yielded as
a `MissingSource` so the caller writes an error record for it and goes on with the rest.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import select
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from cnntool.options import option

IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .png .bmp .gif .tif .tiff .webp .ppm .pgm .pbm .pnm .jfif .ico .tga .dib".split()
)


def recursive_option() -> Any:
    return option(False, "--recursive", "-r", help="Descend into subdirectories.")


@dataclass(frozen=True)
class MissingSource:
    """An input argument that matched nothing, carried to the writer as an error record."""

    source: str
    reason: str


# Linux's PATH_MAX: a longer input line or argument names no file, and is reported, not looked up.
MAX_PATH_BYTES = 4096


def _too_long(start: str, length: int) -> MissingSource:
    return MissingSource(display_name(start[:60]) + "…",
                         f"a line of {length} characters is no file path (the longest is {MAX_PATH_BYTES})")


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def _walk_dir(directory: str, recursive: bool) -> Iterator[str]:
    if recursive:
        found = []
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            found.extend(os.path.join(root, f) for f in files if _is_image_name(f))
        yield from sorted(found)
    else:
        with os.scandir(directory) as it:
            entries = sorted(e.path for e in it if _is_image_name(e.name) and not _is_dir_entry(e))
        yield from entries


def _is_dir_entry(entry: os.DirEntry) -> bool:
    # A symlink loop raises ELOOP here; it is listed, and the opener reports it like any bad file.
    try:
        return entry.is_dir()
    except OSError:
        return False


def _read_list(stream: Iterable[str | InputPause | MissingSource]) -> Iterator[str | InputPause | MissingSource]:
    for line in stream:
        if isinstance(line, (InputPause, MissingSource)):
            yield line
            continue
        line = line.rstrip("\r\n")
        if line.strip():
            yield _too_long(line, len(line)) if len(line) > MAX_PATH_BYTES else line


class InputPause:
    """Marker from `expand(..., pauses=True)`: stdin has no further path ready yet. A consumer that
    batches inputs finishes its batch here instead of waiting, so records flow as paths trickle in."""


PAUSE = InputPause()


def _stdin_paths(pauses: bool) -> Iterator[str | InputPause]:
    """stdin's lines, undecodable bytes kept as surrogate escapes (as os.listdir gives file names): in a
    UTF-8 locale sys.stdin decodes strictly, and one Latin-1 file name would end the run."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a text-only stream (tests, embedding)
        yield from sys.stdin
        return
    encoding = sys.getfilesystemencoding()
    line, length = bytearray(), 0  # the line so far (at most MAX_PATH_BYTES of it kept) and its full length
    while True:
        if pauses and not select.select([fd], [], [], 0)[0]:
            yield PAUSE
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        *ends, rest = chunk.split(b"\n")
        for piece in ends:
            line += piece[:max(0, MAX_PATH_BYTES + 1 - len(line))]
            yield _stdin_line(bytes(line), length + len(piece), encoding)
            line, length = bytearray(), 0
        line += rest[:max(0, MAX_PATH_BYTES + 1 - len(line))]
        length += len(rest)
    if length:
        yield _stdin_line(bytes(line), length, encoding)


def _stdin_line(kept: bytes, length: int, encoding: str) -> str | MissingSource:
    text = kept.decode(encoding, "surrogateescape")
    return _too_long(text, length) if length > MAX_PATH_BYTES else text


def expand(inputs: Iterable[str], *, recursive: bool = False, stdin: TextIO | None = None,
           pauses: bool = False) -> Iterator[str | MissingSource | InputPause]:
    """Yield image paths (str) and MissingSource markers, in a stable order, lazily (so a long stdin list
    streams); with `pauses`, also PAUSE wherever stdin has nothing ready yet."""
    for item in inputs:
        if item == "-":
            yield from _expand_listed(_read_list(stdin if stdin is not None else _stdin_paths(pauses)), recursive)
        elif item.startswith("@") and len(item) > 1:
            list_path = item[1:]
            try:
                with open(list_path, encoding="utf-8", errors="surrogateescape") as fh:
                    lines = list(_read_list(fh))
            except OSError as exc:
                yield MissingSource(item, f"cannot read list file: {exc.strerror or exc}")
                continue
            base = os.path.dirname(list_path)
            yield from _expand_listed((ln if isinstance(ln, MissingSource) or os.path.isabs(ln) else os.path.join(base, ln)
                                       for ln in lines), recursive)
        else:
            yield from _expand_one(item, recursive)


def _expand_listed(lines: Iterable[str], recursive: bool) -> Iterator[str | MissingSource]:
    # Paths from a list are taken literally (a file name may contain '*' or '['), directories expanded.
    for line in lines:
        if isinstance(line, (InputPause, MissingSource)):
            yield line
        elif os.path.isdir(line) and not _is_image_name(line):
            yield from _walk_dir(line, recursive)
        else:
            yield line


def _expand_one(item: str, recursive: bool) -> Iterator[str | MissingSource]:
    if len(item) > MAX_PATH_BYTES:
        yield _too_long(item, len(item))
    elif is_url(item):
        yield item
    elif os.path.isdir(item) and not _is_image_name(item):
        yield from _walk_dir(item, recursive)
    elif os.path.lexists(item) or os.path.isdir(item):
        # Existing files are passed on whatever their suffix; the opener decides if they are images.
        # A directory named like an image reaches the opener too, which reports it as such.
        yield item
    elif _has_glob(item):
        matches = _glob_recursive(item) if "**" in item else sorted(glob.glob(item))
        if not matches:
            yield MissingSource(item, "no file matches this pattern")
        for match in matches:
            if os.path.isdir(match):
                yield from _walk_dir(match, recursive)
            else:
                yield match
    else:
        yield MissingSource(item, "no such file or directory")


def _glob_recursive(pattern: str) -> list[str]:
    """glob's `**` (any depth of directories), walked without following directory symlinks: glob.glob follows
    them, and a link back up the tree (dir/loop -> .) is then walked forever."""
    parts = pattern.split(os.sep)
    fixed = next(i for i, p in enumerate(parts) if _has_glob(p))
    root = os.sep.join(parts[:fixed]) or (os.sep if pattern.startswith(os.sep) else "")
    wanted = parts[fixed:]
    found = []
    for dirpath, dirs, files in os.walk(root or os.curdir):
        dirs.sort()
        rel = os.path.relpath(dirpath, root or os.curdir)
        names = [] if rel == os.curdir else rel.split(os.sep)
        for name in dirs + files:
            if _glob_matches(wanted, names + [name]):
                found.append(os.path.join(root, *names, name))
    return sorted(found)


def _glob_matches(pattern: list[str], names: list[str]) -> bool:
    """Does a path (its names) match pattern components, `**` standing for any number of directories? As
    glob, wildcards do not match names starting with '.'."""
    if not pattern:
        return not names
    head = pattern[0]
    if head == "**":
        return _glob_matches(pattern[1:], names) or (
            bool(names) and not names[0].startswith(".") and _glob_matches(pattern, names[1:]))
    return (bool(names) and (head.startswith(".") or not names[0].startswith("."))
            and fnmatch.fnmatchcase(names[0], head) and _glob_matches(pattern[1:], names[1:]))


URL_SCHEMES = ("http://", "https://")
# A download larger than this is refused (an image that needs more is no photo); one that stalls, abandoned.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 15.0


def is_url(item: str) -> bool:
    return item.lower().startswith(URL_SCHEMES)


class DownloadError(ValueError):
    """A URL input that could not be fetched; the message is one line."""


def fetch(url: str, *, limit: int = MAX_DOWNLOAD_BYTES, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """The body of an http(s) URL, at most `limit` bytes, each read waiting at most `timeout` seconds."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "cnntool"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise DownloadError(f"download refused: {int(declared)} bytes, over the {limit} byte limit")
            chunks, size = [], 0
            while chunk := response.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise DownloadError(f"download stopped: over the {limit} byte limit")
                chunks.append(chunk)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"download failed: {' '.join(str(reason).split())[:200]}") from None
    return b"".join(chunks)


def count(inputs: Iterable[str], *, recursive: bool = False) -> int | None:
    """How many inputs `expand` yields, or None when they stream from stdin (the total is not known ahead)."""
    if any(item == "-" for item in inputs):
        return None
    return sum(1 for _ in expand(inputs, recursive=recursive))


def display_name(path: str | Path) -> str:
    """A path as text that can always be printed and JSON-encoded (undecodable bytes are escaped)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
