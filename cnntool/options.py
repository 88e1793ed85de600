"""Command-line options declared once, on the dataclass field that holds them. stdlib only.

A config dataclass (the training engine's, a task's, a data generator's) marks the fields a user can set
with `option(...)`; cnntool.command turns those fields into a Typer command, so an option's flags, help,
limits and default live in one place and the command only says which configs it takes. Fields without
`option(...)` are programmatic only.

`parse` converts what the shell gives (the type named by `cli_type`, e.g. a string "28x28") into the field's
own type (a tuple), so code that builds a config directly passes the typed value.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable

from cnntool.errors import ConfigError


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # "--epochs", "-e"; empty for a positional argument
    help: str
    limits: dict[str, Any]  # min, max, show_default, hidden, metavar: passed to typer.Option / Argument
    parse: Callable[[Any], Any] | None = None
    cli_type: Any = None  # the type the shell value is read as, when `parse` turns it into another
    cli_default: Any = None  # the shell's default when it differs in type from the field's (a list for a dict)


def option(default: Any, *flags: str, help: str, parse: Callable[[Any], Any] | None = None, cli_type: Any = None,
           cli_default: Any = None, **limits: Any) -> Any:
    """A dataclass field that is also a command-line option. Mutable defaults (lists) are copied per
    instance; dataclasses.MISSING makes it required."""
    meta = {"option": Option(tuple(flags), help, limits, parse, cli_type, cli_default)}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def argument(*, help: str, default: Any = dataclasses.MISSING, **limits: Any) -> Any:
    """A positional command-line argument (a list of them when the field is a list)."""
    meta = {"option": Option((), help, limits)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=list, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_of(field: dataclasses.Field) -> Option | None:
    return field.metadata.get("option")


def kwargs_option(help: str = "Builder override key=value (JSON values), repeatable: --kwarg 'widths=[16,32,64]'.") -> Any:
    return option({}, "--kwarg", help=help, parse=parse_kwargs, cli_type=list[str], cli_default=[])


def input_size_option() -> Any:
    return option(None, "--input-size", help="Input N or HxW (default: the model's).", parse=parse_size,
                  cli_type=str | None)


def channels_option(what: str = "the model's") -> Any:
    return option(None, "--channels", help=f"1 (grey) or 3 (RGB) (default: {what}).")


# --- parsers shared by several options ------------------------------------------------------------------

def parse_kwargs(items: Any) -> dict[str, Any]:
    """`key=value` builder overrides (--kwarg); values are JSON when they parse (numbers, lists), else strings.
    A mapping is taken as given."""
    if isinstance(items, dict):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ConfigError(f"--kwarg wants key=value, not {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_size(text: Any) -> tuple[int, int] | None:
    """--input-size N or HxW → (height, width); a tuple is taken as given."""
    if text is None or isinstance(text, (tuple, list)):
        return None if text is None else (int(text[0]), int(text[-1]))
    parts = str(text).lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise ConfigError(f"--input-size wants N or HxW, not {text!r}") from None
    if len(parts) > 2 or h < 1 or w < 1:
        raise ConfigError(f"--input-size wants N or HxW of positive sides, not {text!r}")
    return h, w


def floats(name: str) -> Callable[[Any], tuple[float, ...] | None]:
    """A parser for comma-separated numbers (--mean 0.5,0.5,0.5) that names its option in errors."""

    def parse(text: Any) -> tuple[float, ...] | None:
        if text is None or isinstance(text, (tuple, list)):
            return None if text is None else tuple(float(v) for v in text)
        try:
            return tuple(float(v) for v in str(text).split(","))
        except ValueError:
            raise ConfigError(f"{name} wants comma-separated numbers, not {text!r}") from None

    return parse
