"""`cnntool shape-calc` behind the command line: turns its options into one of three questions (one layer,
a chain of layers, a missing value), asks cnntool.shapecalc.arithmetic / cnntool.shapecalc.layers, and prints the answer as
text or JSON. layerspec, json and rich are imported only by the answers that need them, so the plain
one-layer answer loads nothing but shapes.py.
"""

from __future__ import annotations

import enum
import math
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

from cnntool.console import quiet_option
from cnntool.errors import ConfigError
from cnntool.options import option
from cnntool.shapecalc.arithmetic import (DIM_NAMES, DimResult, Solutions, Window, drop_warning, format_shape, output_size,
                            per_dim, solve)

if TYPE_CHECKING:
    from fractions import Fraction

    from cnntool.shapecalc.layers import Chain


HELP = """Output sizes of conv and pooling layers, the lecture's way.

One layer: ⌊(n + 2p − f)/s⌋ + 1 with the numbers filled in (torch's
⌊(n + 2p − d·(f−1) − 1)/s⌋ + 1; ceil mode ⌈…⌉; transposed
(n−1)·s − 2p + d·(f−1) + op + 1), a warning on stderr when (n + 2p − f)
is not divisible by s, and with --c-in/--c-out the parameter count.
A chain (--layers or --model): each layer's n_H×n_W×n_C, params, MACs,
receptive field and jump, with totals. MACs count the multiply-
accumulates of conv, transposed conv and fc layers only. --solve: every
n, f, s or p that gives the size --out, or that none does.

\b
Layer grammar: case-insensitive; layers separated by spaces or commas;
DIMS is 3 or 3x5 (one per dimension); 1D/2D/3D follows the input.
  conv{F}\\[s{S}]\\[p{P}]\\[d{D}]\\[b0]:{C}     C output channels, b0 no bias,
                                        P is DIMS, same or valid
  tconv{F}\\[s]\\[p]\\[d]\\[op{O}]\\[b0]:{C}      transposed, O output padding
  max{F}\\[s{S}]\\[p{P}]\\[d{D}]\\[c]           stride defaults to F, c ceil mode
  avg{F}\\[s]\\[p]\\[c]  l2pool{F}\\[s]\\[p]\\[c]   average, L2 pooling
  gap  aap{K}  aap{H}x{W}               global, adaptive average pooling
  flatten  fc:{N}  fc:{N}:b0            fully connected (flattens first)
  bn                                    batch norm, 2·C params
  relu tanh sigmoid softmax dropout dropout{P} lcn lcn{K} lrn lrn{K}
  {K}*( … )                             a group repeated K times
  res( body | shortcut )                body(x) + shortcut(x)
  res( body )                           identity shortcut
  cat( branch | branch | … )            concatenated along channels
e.g.  conv5:6 relu max2   conv7s2p3b0:64 bn max3s2p1   max3s2c
      2*(conv3p1:64 relu)   res(conv3s2p1:128 relu conv3p1:128 | conv1s2:128)
      cat(conv1:64 | conv1:96 conv3p1:128 | max3s1p1 conv1:32)

\b
Example: cnntool shape-calc --n 64 --f 3 --s 2
Example: cnntool shape-calc --n 32 --c-in 1 -l "conv5:6 max2 conv5:16 max2 fc:120 fc:10"
Example: cnntool shape-calc --n 64 --f 5 --out 64 --solve p
"""


class ShapeFormat(str, enum.Enum):
    table = "table"
    json = "json"


@dataclass(frozen=True)
class ShapeQuery:
    """shape-calc's options as typed on the command line (sizes still text: 64, 64x48, same)."""

    n: str | None = option(None, "--n", help="Input size: 64 (a 64×64 image), 64x48, 16x64x64; with --dims 1, a length.")
    f: str | None = option(None, "--f", help="Kernel size: 3 or 3x5.")
    s: str | None = option(None, "--s", help="Stride. Default: 1, for pooling the kernel size.")
    p: str | None = option(None, "--p", help="Padding: a number, 1x2, valid (0) or same (output ⌈n/s⌉: torch's same "
                           "at stride 1, TensorFlow's beyond; n·s for --transposed). Default 0.")
    d: str = option("1", "--d", help="Dilation.")
    dims: int | None = option(None, "--dims", help="1, 2 or 3 spatial dimensions when --n is one number (default 2).")
    pool: Literal["max", "avg", "l2"] | None = option(None, "--pool", help="A pooling layer instead of a convolution.")
    ceil: bool = option(False, "--ceil", help="Pooling in ceil mode: ⌈…⌉, the last window still starting inside the "
                        "input or left padding.")
    transposed: bool = option(False, "--transposed", help="A transposed convolution: (n−1)·s − 2p + d·(f−1) + "
                              "output_padding + 1.")
    output_padding: str = option("0", "--output-padding", help="Transposed conv only: extra size on one side.")
    c_in: int | None = option(None, "--c-in", help="Input channels (chains: default 3).")
    c_out: int | None = option(None, "--c-out", help="Output channels: with --c-in gives the parameter count "
                               "f·f·c_in·c_out + c_out.")
    bias: bool = option(True, "--bias/--no-bias", help="Count the c_out bias parameters.")
    layers: str | None = option(None, "--layers", "-l", help="A chain of layers in the grammar below, on an --n × "
                                "--c-in input.")
    model: str | None = option(None, "--model", "-m", help="A registered model's layers on its own input size (see "
                               "`cnntool models`).")
    solve: Literal["n", "f", "s", "p"] | None = option(None, "--solve", help="Find the values of n, f, s or p that give "
                                                       "the output size --out.")
    out: int | None = option(None, "--out", help="The output size to reach, with --solve.")
    fmt: ShapeFormat = option(ShapeFormat.table, "--format", help="table (text; also when piped) or json.",
                              parse=ShapeFormat, cli_type=Literal["table", "json"], cli_default="table")
    quiet: bool = quiet_option()


def run(query: ShapeQuery, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    _check_mode(query)
    if query.model or query.layers:
        chain, title = _chain(query)
        _print_chain(chain, title, query, stdout, stderr)
    elif query.solve:
        _print_solutions(_solve(query), query, stdout)
    else:
        _print_layer(_single_layer(query), query, stdout, stderr)


def _write_json(stdout: TextIO, answer: dict[str, Any]) -> None:
    import json  # here, not at the top: the default text answer starts faster without it

    stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")


def _check_mode(query: ShapeQuery) -> None:
    if query.model and query.layers:
        raise ConfigError("give --model or --layers, not both")
    one_layer = {"--f": query.f, "--s": query.s, "--p": query.p, "--d": query.d != "1", "--pool": query.pool,
                 "--ceil": query.ceil, "--transposed": query.transposed, "--output-padding": query.output_padding != "0",
                 "--c-out": query.c_out, "--no-bias": not query.bias, "--solve": query.solve, "--out": query.out}
    given = [name for name, value in one_layer.items() if value]
    if (query.model or query.layers) and given:
        raise ConfigError(f"one-layer options ({', '.join(given)}) do not combine with --layers or --model")
    if query.solve and query.out is None:
        raise ConfigError("--solve needs --out, the output size to reach")
    if query.out is not None and not query.solve:
        raise ConfigError("--out is the target of --solve; give --solve n|f|s|p too")
    if query.pool and query.transposed:
        raise ConfigError("a layer is either pooling (--pool) or a transposed conv (--transposed), not both")


def merge_dim_warnings(warnings: list[str]) -> list[str]:
    """"H: x", "W: x" → "H, W: x": a square input would otherwise say everything twice."""
    by_message: dict[str, list[str]] = {}
    for warning in warnings:
        dim, message = warning.split(": ", 1)
        by_message.setdefault(message, []).append(dim)
    return [f"{', '.join(dims)}: {message}" for message, dims in by_message.items()]


# --- reading option text -----------------------------------------------------------------------

def parse_sizes(text: str, what: str) -> tuple[int, ...]:
    """'64' or '64x48' (or '16x64x64') as whole numbers; ranges are checked where the numbers are used."""
    if not re.fullmatch(r"-?\d+(x-?\d+)*", text.strip().lower()):
        raise ConfigError(f"{what} must be a whole number or sizes like 64x48, not {text!r}")
    return tuple(int(v) for v in text.strip().lower().split("x"))


def _input_sizes(query: ShapeQuery) -> tuple[int, ...]:
    if query.n is None:
        raise ConfigError("give the input size --n (e.g. --n 64 or --n 64x48)")
    sizes = parse_sizes(query.n, "--n")
    if query.dims is not None and len(sizes) == 1:
        sizes = sizes * query.dims
    elif len(sizes) == 1:
        sizes = sizes * 2  # an n×n image, the lecture's usual case
    if query.dims is not None and len(sizes) != query.dims:
        raise ConfigError(f"--n {query.n} has {len(sizes)} sizes but --dims is {query.dims}")
    if not 1 <= len(sizes) <= 3:
        raise ConfigError(f"--n must have 1 to 3 sizes, not {len(sizes)}")
    bad = [v for v in sizes if v < 1]
    if bad:
        raise ConfigError(f"input size must be at least 1, not {bad[0]}")
    return sizes


def _kind(query: ShapeQuery) -> str:
    if query.pool:
        return query.pool
    return "tconv" if query.transposed else "conv"


def _windows(query: ShapeQuery, dims: int) -> tuple[Window, ...]:
    kind = _kind(query)
    if query.f is None:
        raise ConfigError("give the kernel size --f (e.g. --f 3 or --f 3x5)")
    f = per_dim(parse_sizes(query.f, "--f"), dims, "--f")
    s = per_dim(parse_sizes(query.s, "--s"), dims, "--s") if query.s else \
        (f if kind in ("max", "avg", "l2") else (1,) * dims)
    p = _padding(query.p, dims)
    d = per_dim(parse_sizes(query.d, "--d"), dims, "--d")
    op = per_dim(parse_sizes(query.output_padding, "--output-padding"), dims, "--output-padding")
    return tuple(
        Window(kind, f[i], s[i], p if isinstance(p, str) else p[i], d[i], query.ceil, op[i], dims)
        for i in range(dims)
    )


def _padding(text: str | None, dims: int) -> str | tuple[int, ...]:
    if text is None:
        return (0,) * dims
    if text.strip().lower() in ("same", "valid"):
        return text.strip().lower()
    return per_dim(parse_sizes(text, "--p"), dims, "--p")


# --- one layer ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerAnswer:
    kind: str
    windows: tuple[Window, ...]
    results: tuple[DimResult, ...]
    channels: int | None  # output channels, when the input's are known
    params: int | None
    params_formula: str | None


def _single_layer(query: ShapeQuery) -> LayerAnswer:
    sizes = _input_sizes(query)
    windows = _windows(query, len(sizes))
    results = tuple(output_size(w, n) for w, n in zip(windows, sizes))
    kind = _kind(query)
    channels, params, formula = _channels(query, kind, [w.f for w in windows])
    return LayerAnswer(kind, windows, results, channels, params, formula)


def _channels(query: ShapeQuery, kind: str, kernel: list[int]) -> tuple[int | None, int | None, str | None]:
    """Output channels and the lecture's parameter count f·f·c_in·c_out + c_out."""
    for name, value in (("--c-in", query.c_in), ("--c-out", query.c_out)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, not {value}")
    if kind in ("max", "avg", "l2"):
        if query.c_out is not None:
            raise ConfigError("pooling keeps the channels: give --c-in only")
        return query.c_in, (0 if query.c_in else None), None
    if query.c_in is None and query.c_out is None:
        return None, None, None
    if query.c_in is None or query.c_out is None:
        raise ConfigError("the parameter count needs both --c-in and --c-out")
    weights = math.prod(kernel) * query.c_in * query.c_out
    params = weights + (query.c_out if query.bias else 0)
    formula = "·".join(map(str, [*kernel, query.c_in, query.c_out])) + (f" + {query.c_out}" if query.bias else "")
    return query.c_out, params, f"{formula} = {params}"


def _print_layer(answer: LayerAnswer, query: ShapeQuery, stdout: TextIO, stderr: TextIO) -> None:
    dims = len(answer.results)
    names = DIM_NAMES[dims]
    warnings = merge_dim_warnings([f"{names[i]}: {drop_warning(w, r)}"
                                   for i, (w, r) in enumerate(zip(answer.windows, answer.results)) if r.dropped])
    notes = merge_dim_warnings([f"{names[i]}: {note}" for i, r in enumerate(answer.results) for note in r.notes])
    if query.fmt is ShapeFormat.json:
        _write_json(stdout, _layer_json(answer, warnings + notes))
    else:
        formulas = [r.formula for r in answer.results]
        if len(set(formulas)) == 1:
            lines = [formulas[0]]
        else:
            lines = [f"{names[i]}: {formula}" for i, formula in enumerate(formulas)]
        out = [r.out for r in answer.results]
        lines.append(f"output: {format_shape((answer.channels, *out)) if answer.channels else '×'.join(map(str, out))}")
        if answer.params_formula:
            lines.append(f"params: {answer.params_formula}")
        stdout.write("\n".join(lines) + "\n")
    if not query.quiet:
        for message in warnings + notes:
            stderr.write(f"cnntool: warning: {message}\n" if message in warnings else f"cnntool: note: {message}\n")


def _layer_json(answer: LayerAnswer, warnings: list[str]) -> dict[str, Any]:
    return {
        "layer": answer.kind,
        "input": [r.n for r in answer.results],
        "output": [r.out for r in answer.results],
        "dims": [
            {"n": r.n, "f": w.f, "s": w.s, "padding": list(r.pad), "d": w.d, "ceil": w.ceil,
             "output_padding": r.output_padding, "out": r.out, "dropped": r.dropped, "formula": r.formula}
            for w, r in zip(answer.windows, answer.results)
        ],
        "channels": answer.channels,
        "params": answer.params,
        "warnings": warnings,
    }


# --- a missing value ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SolveAnswer:
    solutions: Solutions
    layer: dict[str, Any]  # the known values, for the report
    examples: tuple[str, ...]  # the formula filled in for the first few solutions
    hint: str | None


def _scalar(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    values = parse_sizes(text, what)
    if len(values) != 1:
        raise ConfigError(f"--solve works on one dimension at a time; give {what} as one number")
    return values[0]


def _solve(query: ShapeQuery) -> SolveAnswer:
    kind = _kind(query)
    unknown = query.solve
    if unknown == "f" and kind in ("max", "avg", "l2") and query.s is None:
        raise ConfigError("pooling's stride defaults to its kernel; give --s when solving for f")
    if {"n": query.n, "f": query.f, "s": query.s, "p": query.p}[unknown] is not None:
        raise ConfigError(f"--{unknown} is given and also asked for by --solve {unknown}")
    if query.dims not in (None, 1):
        raise ConfigError("--solve works on one dimension at a time")
    padding = query.p.strip().lower() if query.p else None
    known: dict[str, Any] = {
        "n": _scalar(query.n, "--n"),
        "f": _scalar(query.f, "--f"),
        "s": _scalar(query.s, "--s"),
        "p": padding if padding in ("same", "valid") else _scalar(query.p, "--p"),
    }
    if known["s"] is None and unknown != "s":
        known["s"] = known["f"] if kind in ("max", "avg", "l2") else 1
    if known["p"] is None and unknown != "p":
        known["p"] = 0
    rest = {"d": _scalar(query.d, "--d"), "ceil": query.ceil,
            "output_padding": _scalar(query.output_padding, "--output-padding")}
    solutions = solve(unknown, query.out, kind=kind, **known, **rest)
    examples = tuple(
        output_size(_window(kind, {**known, unknown: value}, rest), {**known, unknown: value}["n"]).formula
        for value in solutions.values[:6]
    )
    layer = {"layer": kind, **{k: v for k, v in known.items() if k != unknown}, "d": rest["d"]}
    return SolveAnswer(solutions, layer, examples, _same_hint(unknown, kind, known, rest, query.out, solutions))


def _window(kind: str, values: dict[str, Any], rest: dict[str, Any]) -> Window:
    return Window(kind, values["f"], values["s"], values["p"], rest["d"], rest["ceil"], rest["output_padding"])


def _same_hint(unknown: str, kind: str, known: dict, rest: dict, out: int, solutions: Solutions) -> str | None:
    """When no symmetric padding works, asymmetric "same" padding may still do it."""
    if unknown != "p" or solutions.exists or kind == "tconv":
        return None
    try:
        result = output_size(_window(kind, {**known, "p": "same"}, rest), known["n"])
    except ConfigError:
        return None
    if result.out != out:
        return None
    lo, hi = result.pad
    return f"--p same reaches {out} by padding {lo} before and {hi} after"


def _print_solutions(answer: SolveAnswer, query: ShapeQuery, stdout: TextIO) -> None:
    sol = answer.solutions
    if query.fmt is ShapeFormat.json:
        _write_json(stdout, {**answer.layer, "out": query.out, "solve": sol.unknown, "solutions": list(sol.values),
                             "and_above": sol.and_above, "hint": answer.hint})
        return
    given = ", ".join(f"{k}={v}" for k, v in answer.layer.items() if k != "layer")
    if not sol.exists:
        lines = [f"no {sol.unknown} gives {query.out} ({answer.layer['layer']}, {given})"]
        if answer.hint:
            lines.append(answer.hint)
    else:
        lines = [_solutions_text(sol)] + [f"  {example}" for example in answer.examples]
    stdout.write("\n".join(lines) + "\n")


def _solutions_text(sol: Solutions) -> str:
    """p = 2, n ∈ {63, 64}, s ≥ 62, or s ∈ {3} or s ≥ 5."""
    listed = ""
    if len(sol.values) == 1:
        listed = f"{sol.unknown} = {sol.values[0]}"
    elif sol.values:
        listed = f"{sol.unknown} ∈ {{{', '.join(map(str, sol.values))}}}"
    if sol.and_above is None:
        return listed
    tail = f"{sol.unknown} ≥ {sol.and_above}"
    return f"{listed} or {tail}" if listed else tail


# --- a chain of layers -------------------------------------------------------------------------

def _chain(query: ShapeQuery) -> tuple[Chain, str]:
    from cnntool.shapecalc.layers import describe

    if query.model:
        from cnntool.models import catalog

        spec = catalog.get(query.model)
        if spec.layers is None:
            raise ConfigError(f"model {query.model!r} has no layer description for shape-calc "
                              "(its architecture is not a plain chain)")
        sizes = _input_sizes(query) if query.n else spec.input.size
        channels = query.c_in or spec.input.channels
        return describe(spec.layers, (channels, *sizes)), query.model
    sizes = _input_sizes(query)
    if query.c_in is not None and query.c_in < 1:
        raise ConfigError(f"--c-in must be at least 1, not {query.c_in}")
    return describe(query.layers, (query.c_in or 3, *sizes)), ""


def _number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else round(float(value), 6)


def _per_dim_text(values: tuple[Fraction, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "×".join(str(v) for v in values)


def _print_chain(chain: Chain, title: str, query: ShapeQuery, stdout: TextIO, stderr: TextIO) -> None:
    if query.fmt is ShapeFormat.json:
        _write_json(stdout, _chain_json(chain, query.model))
    else:
        _chain_table(chain, title, stdout)
    if not query.quiet:
        for index, row in enumerate(chain.rows, 1):
            for warning in merge_dim_warnings(list(row.warnings)):
                stderr.write(f"cnntool: warning: layer {index} '{row.name}': {warning}\n")


def _chain_json(chain: Chain, model: str | None = None) -> dict[str, Any]:
    return {
        "model": model,
        "input": list(chain.input_shape),
        "layers": [
            {"index": i, "layer": row.name, "depth": row.depth, "path": row.path, "output": list(row.output_shape),
             "params": row.params, "macs": row.macs, "rf": [_number(v) for v in row.rf],
             "jump": [_number(v) for v in row.jump], "warnings": list(row.warnings)}
            for i, row in enumerate(chain.rows, 1)
        ],
        "output": list(chain.output_shape),
        "total_params": chain.total_params,
        "total_macs": chain.total_macs,
    }


def _chain_table(chain: Chain, title: str, stdout: TextIO) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cnntool.records import rich_console

    table = Table(title=escape(title) or None, title_justify="left", show_footer=True)
    table.add_column("#", justify="right")
    table.add_column("layer", footer="total")
    table.add_column("n_H×n_W×n_C", justify="right", footer=format_shape(chain.output_shape))
    table.add_column("params", justify="right", footer=f"{chain.total_params:,}")
    table.add_column("MACs", justify="right", footer=f"{chain.total_macs:,}")
    table.add_column("RF", justify="right")
    table.add_column("jump", justify="right")
    table.add_row("", "input", format_shape(chain.input_shape), "", "", "1", "1")
    previous_path = ""
    for index, row in enumerate(chain.rows, 1):
        merge = row.name.startswith(("res:", "cat:"))
        # the first layer of each branch says which branch it starts
        branch = f"[{row.path.rsplit('.', 1)[-1]}] " if row.path != previous_path and row.depth and not merge else ""
        previous_path = row.path
        name = "  " * row.depth + ("└ " if merge else "") + branch + row.name
        table.add_row(str(index), escape(name), format_shape(row.output_shape), f"{row.params:,}",
                      f"{row.macs:,}" if row.macs else "", _per_dim_text(row.rf), _per_dim_text(row.jump))
    rich_console(stdout).print(table)
