"""What a person reads: text made safe to print, warnings on stderr, and the rich console of reports.

File names, class names and error messages come from users' files and folders, and may carry terminal
escape sequences (clear the screen, set the window title, an unterminated OSC that swallows what follows).
Every human-facing output (tables, CSV, stderr) passes such text through `printable` first: control
characters are shown as escapes (`\\x1b`), never sent raw. JSON output escapes them by its own rules.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

from cnntool.options import option

# C0 controls but tab, DEL, and C1 controls (0x80-0x9f: 0x9b alone starts a CSI on many terminals).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def quiet_option() -> Any:
    return option(False, "--quiet", "-q", help="No progress or warnings on stderr.")


def printable(text: object) -> str:
    """`text` with every control character written as a visible escape; newlines too (one line per item)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def warn(message: str, *, quiet: bool = False, stream: TextIO | None = None) -> None:
    """One line on stderr, prefixed "cnntool: ", its control characters escaped; nothing under -q."""
    if not quiet:
        (stream or sys.stderr).write(f"cnntool: {printable(message)}\n")


def rich_console(stream: TextIO):
    """A rich Console writing to stream. Off a terminal rich assumes 80 columns and folds long lines and
    tables; a redirected report or table gets room enough that nothing folds."""
    from rich.console import Console

    isatty = getattr(stream, "isatty", None)
    return Console(file=stream, highlight=False, width=None if isatty is not None and isatty() else 200)
