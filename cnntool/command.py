"""Typer commands built from config dataclasses.

A command names the configs it takes; its options (flags, help, limits, defaults) come from the fields those
configs declare with cnntool.options.option, nested config dataclasses included (an AugmentConfig inside a
training config). The generated function has an ordinary signature, so Typer parses, documents and
completes it as it would a hand-written one; the body receives the configs already built.
"""

from __future__ import annotations

import dataclasses
import inspect
import shlex
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Mapping

import typer

from cnntool.options import Option, option_of


@dataclass(frozen=True)
class Uses:
    """A config a command takes, less the options it does not offer, with its own defaults."""

    config: type
    skip: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class _Param:
    name: str
    owner: tuple[str, ...]  # the field path from the top config: ("augment", "shift")
    option: Option
    annotation: Any
    default: Any  # ... when required


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


def _params(config: type, skip: tuple[str, ...], owner: tuple[str, ...] = (), defaults: Any = None) -> list[_Param]:
    """The options of `config`, its own first, then those of nested configs; a nested config's defaults are
    those of the instance its parent's field defaults to (landmarks' shift differs from localize's). `skip`
    names fields at any depth, or one place as a dotted path ("verify.format")."""
    hints = typing.get_type_hints(config)
    own, nested = [], []
    for f in dataclasses.fields(config):
        kind, path = hints[f.name], (*owner, f.name)
        if f.name in skip or ".".join(path) in skip:
            continue
        default = getattr(defaults, f.name) if defaults is not None else _field_default(f)
        if dataclasses.is_dataclass(kind):
            nested += _params(kind, skip, path, default)
        elif option_of(f) is not None:
            meta = option_of(f)
            own.append(_Param(f.name, path, meta, meta.cli_type or kind, default))
    return own + nested


def _default(p: _Param, defaults: Mapping[str, Any]) -> Any:
    if p.name in defaults:
        return defaults[p.name]
    if p.option.cli_default is not None:
        return p.option.cli_default
    return p.default


def _parameter(p: _Param, defaults: Mapping[str, Any]) -> inspect.Parameter:
    default = _default(p, defaults)
    limits = dict(p.option.limits)
    if default is None:
        limits.setdefault("show_default", False)
    if isinstance(default, tuple):
        default = list(default)
    info = (typer.Option(*p.option.flags, help=p.option.help, **limits) if p.option.flags
            else typer.Argument(help=p.option.help, **limits))
    return inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[p.annotation, info])


def _build(config: type, values: Mapping[str, Any], params: list[_Param], owner: tuple[str, ...] = ()) -> Any:
    """The config from parsed values; fields the command does not offer keep their defaults."""
    given = {}
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        path = (*owner, f.name)
        if dataclasses.is_dataclass(hints[f.name]) and any(p.owner[:len(path)] == path for p in params):
            given[f.name] = _build(hints[f.name], values, params, path)
            continue
        p = next((p for p in params if p.owner == path), None)
        if p is not None:
            value = values[p.name]
            given[f.name] = p.option.parse(value) if p.option.parse else value
    return config(**given)


def command(body: Callable[..., Any], *uses: type | Uses, doc: str, context: bool = False,
            extra: Mapping[str, Any] = {}) -> Callable[..., Any]:
    """A function Typer can register: its parameters are the options of `uses` (each a config class, or
    Uses(config, skip, defaults)) and the `extra` parameters (name → Annotated type, for arguments that belong
    to no config); calling it builds each config and calls body(*configs, **extra values[, ctx=…])."""
    parts = [u if isinstance(u, Uses) else Uses(u) for u in uses]
    per_part = [_params(u.config, u.skip) for u in parts]
    names = [p.name for params in per_part for p in params] + list(extra)
    if len(names) != len(set(names)):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"option declared twice for one command: {', '.join(repeated)}")
    signature = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)] if context else []
    signature += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind)
                  for name, kind in extra.items()]
    signature += [_parameter(p, u.defaults) for u, params in zip(parts, per_part) for p in params]

    def run(**values: Any) -> Any:
        configs = [_build(u.config, values, params) for u, params in zip(parts, per_part)]
        kwargs = {name: values[name] for name in extra}
        if context:
            kwargs["ctx"] = values["ctx"]
        return body(*configs, **kwargs)

    run.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    run.__annotations__ = {}
    run.__doc__ = doc
    run.__name__ = body.__name__
    return run


def command_line(ctx: typer.Context) -> str:
    """The command as the user gave it, in canonical spelling (recorded in a trained model's metadata)."""
    words = ctx.command_path.split()
    words[0] = "cnntool"
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":  # by name: typer may bundle its own click
            continue
        value, flag = ctx.params[param.name], param.opts[0]
        if param.param_type_name == "argument":
            words += [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]
            continue
        if param.is_flag:
            words.append(flag if value else (param.secondary_opts or [flag])[0])
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            words += [flag, str(item)]
    return shlex.join(words)
