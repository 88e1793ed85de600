"""Expand command-line inputs into a stable, ordered stream of image paths. stdlib only.

Accepted: files, directories (image files inside, sorted, optionally recursive), glob patterns,
`@list.txt` (one path per line), `-` (one path per line on stdin), and http(s):// URLs (downloaded when
read, with a size cap and a timeout: `fetch`). Order follows the arguments;
within a directory or glob, paths are sorted. An input that names nothing is not fatal: it is yielded as
a `MissingSource` so the caller writes an error record for it and goes on with the rest.
"""

from __future__ import annotations

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


def _read_list(stream: Iterable[str | InputPause]) -> Iterator[str | InputPause]:
    for line in stream:
        if isinstance(line, InputPause):
            yield line
            continue
        line = line.rstrip("\r\n")
        if line.strip():
            yield line


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
    pending = b""
    while True:
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            yield raw.decode(encoding, "surrogateescape")
        if pauses and not select.select([fd], [], [], 0)[0]:
            yield PAUSE
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        pending += chunk
    if pending:
        yield pending.decode(encoding, "surrogateescape")


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
            yield from _expand_listed((ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines), recursive)
        else:
            yield from _expand_one(item, recursive)


def _expand_listed(lines: Iterable[str], recursive: bool) -> Iterator[str | MissingSource]:
    # Paths from a list are taken literally (a file name may contain '*' or '['), directories expanded.
    for line in lines:
        if isinstance(line, InputPause):
            yield line
        elif os.path.isdir(line) and not _is_image_name(line):
            yield from _walk_dir(line, recursive)
        else:
            yield line


def _expand_one(item: str, recursive: bool) -> Iterator[str | MissingSource]:
    if is_url(item):
        yield item
    elif os.path.isdir(item) and not _is_image_name(item):
        yield from _walk_dir(item, recursive)
    elif os.path.lexists(item) or os.path.isdir(item):
        # Existing files are passed on whatever their suffix; the opener decides if they are images.
        # A directory named like an image reaches the opener too, which reports it as such.
        yield item
    elif _has_glob(item):
        matches = sorted(glob.glob(item, recursive=True))
        if not matches:
            yield MissingSource(item, "no file matches this pattern")
        for match in matches:
            if os.path.isdir(match):
                yield from _walk_dir(match, recursive)
            else:
                yield match
    else:
        yield MissingSource(item, "no such file or directory")


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
