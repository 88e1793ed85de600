"""`cnntool shape-calc` behind the command line: turns its options into one of its questions (one layer, a
missing value, a chain of layers, a registered model, the cost of a bottleneck, the values of a small conv or
pooling by hand), asks the module that answers it (arithmetic, layers, trace, cost, values), and prints the
answer as text or JSON. Only the answers that need them import layers, json or rich, so the plain one-layer
answer loads nothing but arithmetic.py; only tracing a model that is not a chain imports torch.
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

    from cnntool.registry import ModelSpec
    from cnntool.shapecalc.cost import Cost, Step
    from cnntool.shapecalc.layers import Chain
    from cnntool.shapecalc.trace import Grid, Trace
    from cnntool.shapecalc.values import Geometry, Matrix


HELP = """Output sizes of conv and pooling layers, the lecture's way.

One layer: ⌊(n + 2p − f)/s⌋ + 1 with the numbers filled in (torch's
⌊(n + 2p − d·(f−1) − 1)/s⌋ + 1; ceil mode ⌈…⌉; transposed
(n−1)·s − 2p + d·(f−1) + op + 1), a warning on stderr when (n + 2p − f)
is not divisible by s, and with --c-in/--c-out the parameter count.
A chain (--layers or --model): each layer's n_H×n_W×n_C, params, MACs,
receptive field and jump, with totals. MACs count the multiply-
accumulates of conv, transposed conv and fc layers only. A registered
model that is not a chain (detectors, the face models, the localizer …)
is traced instead: built without weights and run once on a zero image of
its input size (a 640×480 photo for models that take any size), listing
each layer's output, params and MACs, and a detector's grid S×S×A×(5+C).
--solve: every n, f, s or p that gives the size --out, or that none does.

--cost: the multiplications of one conv layer (--n, --c-in, --f, --c-out;
padding same unless --p says otherwise) and, with --bottleneck K, of the
same layer behind a 1×1 conv to K channels, and the ratio (Inception).

--input: a small conv (--kernel) or pooling (--pool, --f) worked out by
hand, forward, and with --error (the upstream error ∂L/∂Z) backward: the
input error ∂L/∂A and a conv's kernel and bias gradients. Matrices are
rows separated by ';' ("1 2; 3 4"), or @FILE with one row a line.

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
Example: cnntool shape-calc --model alexnet-lecture
Example: cnntool shape-calc --model yolo-digits
Example: cnntool shape-calc --cost --n 28 --c-in 192 --f 5 --c-out 32 --bottleneck 16
Example: cnntool shape-calc --input "10 10 10 0 0 0; 10 10 10 0 0 0; 10 10 10 0 0 0; 10 10 10 0 0 0; 10 10 10 0 0 0; 10 10 10 0 0 0" --kernel "1 0 -1; 1 0 -1; 1 0 -1"
Example: cnntool shape-calc --input "1 3 2 1; 2 9 1 1; 1 3 2 3; 5 6 1 2" --pool max --f 2 --error "1 3; 2 4"
Example: cnntool shape-calc --input "1 2 3; 4 5 6; 7 8 9" --kernel "1 0; 0 -1" --error "1 2; 3 4"
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
    model: str | None = option(None, "--model", "-m", help="A registered model's layers on its own input size "
                               "(see `cnntool models`); one that is not a chain is traced through torch.")
    solve: Literal["n", "f", "s", "p"] | None = option(None, "--solve", help="Find the values of n, f, s or p that give "
                                                       "the output size --out.")
    out: int | None = option(None, "--out", help="The output size to reach, with --solve.")
    cost: bool = option(False, "--cost", help="The multiplications of one conv layer (--n, --c-in, --f, --c-out; "
                        "padding same unless --p says otherwise), with --bottleneck also behind a 1×1 conv.")
    bottleneck: int | None = option(None, "--bottleneck", help="With --cost: the channels of a 1×1 conv put before "
                                    "the layer (Inception's bottleneck); prints both counts and their ratio.")
    input: str | None = option(None, "--input", help="A matrix to run a conv (--kernel) or a pooling (--pool, --f) "
                               "over by hand: \"1 2 3; 4 5 6; 7 8 9\" (rows separated by ';'), or @FILE.")
    kernel: str | None = option(None, "--kernel", help="With --input: the conv's weights, a matrix like --input.")
    error: str | None = option(None, "--error", help="With --input: the upstream error ∂L/∂Z, a matrix of the "
                               "output's size; prints the input error ∂L/∂A and a conv's kernel and bias gradients.")
    fmt: ShapeFormat = option(ShapeFormat.table, "--format", help="table (text; also when piped) or json.",
                              parse=ShapeFormat, cli_type=Literal["table", "json"], cli_default="table")
    quiet: bool = quiet_option()


def run(query: ShapeQuery, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    _check_mode(query)
    if query.input is not None:
        _print_values(_values(query), query, stdout)
    elif query.cost:
        _print_cost(_cost(query), query, stdout)
    elif query.model or query.layers:
        spec = _model_spec(query.model) if query.model else None
        if spec is not None and spec.layers is None:
            _print_trace(spec, _trace(query, spec), query, stdout)
        else:
            _print_chain(_chain(query, spec), query.model or "", query, stdout, stderr)
    elif query.solve:
        _print_solutions(_solve(query), query, stdout)
    else:
        _print_layer(_single_layer(query), query, stdout, stderr)


def _write_json(stdout: TextIO, answer: dict[str, Any]) -> None:
    import json  # here, not at the top: the default text answer starts faster without it

    stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")


# The options each question takes besides its own, --format and -q. One layer and --solve take the layer
# options and check their own combinations below.
_TAKES = {
    "--model": ("--n", "--dims", "--c-in"),
    "--layers": ("--n", "--dims", "--c-in"),
    "--cost": ("--n", "--dims", "--f", "--s", "--p", "--d", "--c-in", "--c-out", "--bottleneck"),
    "--input": ("--kernel", "--error", "--pool", "--f", "--s", "--p", "--d", "--ceil"),
}


def _given(query: ShapeQuery) -> list[str]:
    """The options given on the command line, less the ones that name the question."""
    values = {"--n": query.n, "--f": query.f, "--s": query.s, "--p": query.p, "--d": query.d != "1",
              "--dims": query.dims is not None, "--pool": query.pool, "--ceil": query.ceil,
              "--transposed": query.transposed, "--output-padding": query.output_padding != "0",
              "--c-in": query.c_in is not None, "--c-out": query.c_out is not None, "--no-bias": not query.bias,
              "--solve": query.solve, "--out": query.out is not None, "--bottleneck": query.bottleneck is not None,
              "--kernel": query.kernel is not None, "--error": query.error is not None}
    return [flag for flag, value in values.items() if value]


def _check_mode(query: ShapeQuery) -> None:
    questions = [flag for flag, asked in (("--model", query.model), ("--layers", query.layers), ("--cost", query.cost),
                                          ("--input", query.input is not None)) if asked]
    if len(questions) > 1:
        raise ConfigError(f"{' and '.join(questions)} ask different questions: give one")
    given = _given(query)
    if questions:
        extra = [flag for flag in given if flag not in _TAKES[questions[0]]]
        if extra:
            raise ConfigError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not combine with "
                              f"{questions[0]}")
    for flag, question in (("--bottleneck", "--cost"), ("--kernel", "--input"), ("--error", "--input")):
        if flag in given and question not in questions:
            raise ConfigError(f"{flag} goes with {question}")
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


def _windows(query: ShapeQuery, dims: int, kernel: tuple[int, ...] | None = None) -> tuple[Window, ...]:
    """One Window per dimension from the layer options; `kernel` gives the kernel size instead of --f."""
    kind = _kind(query)
    if query.f is None and kernel is None:
        raise ConfigError("give the kernel size --f (e.g. --f 3 or --f 3x5)")
    f = kernel or per_dim(parse_sizes(query.f, "--f"), dims, "--f")
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

def _model_spec(name: str) -> ModelSpec:
    from cnntool.models import catalog

    return catalog.get(name)


def _chain(query: ShapeQuery, spec: ModelSpec | None) -> Chain:
    from cnntool.shapecalc.layers import describe

    if query.c_in is not None and query.c_in < 1:
        raise ConfigError(f"--c-in must be at least 1, not {query.c_in}")
    if spec is not None:
        sizes = _input_sizes(query) if query.n else spec.input.size
        return describe(spec.layers, (query.c_in or spec.input.channels, *sizes))
    return describe(query.layers, (query.c_in or 3, *_input_sizes(query)))


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


# --- a registered model that is not a chain --------------------------------------------------------

def _trace(query: ShapeQuery, spec: ModelSpec) -> Trace:
    from cnntool.shapecalc.trace import PHOTO_SIZE, trace

    if query.c_in is not None and query.c_in != spec.input.channels:
        raise ConfigError(f"{spec.name} is traced as it is built, on {spec.input.channels} channel(s); drop --c-in")
    if query.n:
        sizes = _input_sizes(query)
        if len(sizes) != 2:
            raise ConfigError(f"{spec.name} takes images: give --n as H or HxW")
    else:
        sizes = PHOTO_SIZE if spec.input.resize == "none" else spec.input.size
    return trace(spec, (spec.input.channels, *sizes))


def _trace_note(spec: ModelSpec, answer: Trace, query: ShapeQuery) -> str:
    from cnntool.shapecalc.trace import PHOTO_SIZE

    note = f"traced: built without weights, run on one zero {format_shape(answer.input_shape)} image"
    if spec.input.resize == "none" and not query.n:
        note += (f"; it takes photos at their own size, so a {PHOTO_SIZE[1]}×{PHOTO_SIZE[0]} one stands in "
                 "(--n HxW for another)")
    return note


def _output_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    """Torch shapes in the lecture's order: (1, C, H, W) → H×W×C, (1, F) → F; a batch N > 1 (a batch of
    windows) in front as "N × …"; other tensors as torch gives them."""
    texts = []
    for shape in shapes:
        if len(shape) in (2, 4):
            text = format_shape(shape[1:])
            texts.append(text if shape[0] == 1 else f"{shape[0]} × {text}")
        else:
            texts.append("×".join(map(str, shape)))
    return ", ".join(texts)


def _trace_lines(answer: Trace) -> list[str]:
    """What the table cannot say: parameters held but not run, and a detector's grids."""
    lines = []
    if answer.params_not_run:
        lines.append(f"{answer.params_not_run:,} of the {answer.total_params:,} parameters did not run on this input")
    head = answer.head
    if head is not None:
        lines.append(f"grid head S×S×A×(5+C) = {head.rows}×{head.cols}×{head.anchors}×(5+{head.classes}) = "
                     f"{head.volume:,} (per cell and anchor: p_c, b_x, b_y, b_h, b_w and {head.classes} class scores)")
    if answer.anchors:
        levels = " + ".join(f"{g.rows}×{g.cols}×{g.anchors}" for g in answer.anchors)
        lines.append(f"anchors S×S×A per feature level: {levels} = {sum(g.volume for g in answer.anchors):,}")
    return lines


def _grid_json(grid: Grid) -> dict[str, Any]:
    return {"rows": grid.rows, "cols": grid.cols, "anchors": grid.anchors, "values": grid.values,
            "classes": grid.classes, "volume": grid.volume}


def _print_trace(spec: ModelSpec, answer: Trace, query: ShapeQuery, stdout: TextIO) -> None:
    note = _trace_note(spec, answer, query)
    if query.fmt is ShapeFormat.json:
        _write_json(stdout, {
            "model": spec.name, "traced": True, "note": note, "input": list(answer.input_shape),
            "layers": [{"index": i, "module": layer.path, "layer": layer.layer,
                        "outputs": [list(shape) for shape in layer.outputs], "params": layer.params,
                        "macs": layer.macs, "run": layer.run}
                       for i, layer in enumerate(answer.layers, 1)],
            "total_params": answer.total_params, "params_not_run": answer.params_not_run,
            "total_macs": answer.total_macs, "grid_head": _grid_json(answer.head) if answer.head else None,
            "anchor_grids": [_grid_json(grid) for grid in answer.anchors],
        })
        return
    from rich.markup import escape
    from rich.table import Table

    from cnntool.records import rich_console

    table = Table(title=escape(f"{spec.name} ({note})"), title_justify="left", show_footer=True)
    table.add_column("#", justify="right")
    table.add_column("module", footer="total")
    table.add_column("layer")
    table.add_column("output", justify="right")
    table.add_column("params", justify="right", footer=f"{answer.total_params:,}")
    table.add_column("MACs", justify="right", footer=f"{answer.total_macs:,}")
    table.add_row("", "input", "", format_shape(answer.input_shape), "", "")
    for index, layer in enumerate(answer.layers, 1):
        again = f" (run {layer.run})" if layer.run > 1 else ""
        table.add_row(str(index), escape(layer.path), escape(layer.layer + again), _output_text(layer.outputs),
                      f"{layer.params:,}", f"{layer.macs:,}" if layer.macs else "")
    console = rich_console(stdout)
    console.print(table)
    for line in _trace_lines(answer):
        console.print(escape(line), highlight=False)


# --- the cost of a bottleneck ------------------------------------------------------------------

def _cost(query: ShapeQuery) -> Cost:
    from cnntool.shapecalc.cost import conv_cost

    sizes = _input_sizes(query)
    dims = len(sizes)
    for name, value, what in (("--c-in", query.c_in, "the input channels"), ("--f", query.f, "the kernel size"),
                              ("--c-out", query.c_out, "the number of filters")):
        if value is None:
            raise ConfigError(f"--cost needs {name}, {what}")
    for name, value in (("--c-in", query.c_in), ("--c-out", query.c_out), ("--bottleneck", query.bottleneck)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, not {value}")
    return conv_cost(
        (query.c_in, *sizes), per_dim(parse_sizes(query.f, "--f"), dims, "--f"), query.c_out,
        stride=per_dim(parse_sizes(query.s, "--s"), dims, "--s") if query.s else (1,) * dims,
        padding=_padding(query.p, dims) if query.p else "same",
        dilation=per_dim(parse_sizes(query.d, "--d"), dims, "--d"),
        bottleneck=query.bottleneck,
    )


def _step_text(step: Step) -> str:
    return (f"{step.layer} on {format_shape(step.input_shape)} → {format_shape(step.output_shape)}: "
            f"{step.formula}")


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.1f}× fewer" if ratio >= 1 else f"{1 / ratio:.1f}× more"


def _print_cost(answer: Cost, query: ShapeQuery, stdout: TextIO) -> None:
    steps = answer.bottlenecked or ()
    if query.fmt is ShapeFormat.json:
        def step_json(step: Step) -> dict[str, Any]:
            return {"layer": step.layer, "input": list(step.input_shape), "output": list(step.output_shape),
                    "macs": step.macs, "formula": step.formula}

        _write_json(stdout, {"layer": step_json(answer.direct), "macs": answer.direct.macs,
                             "bottleneck": query.bottleneck, "bottleneck_layers": [step_json(s) for s in steps],
                             "bottleneck_macs": answer.bottleneck_macs, "ratio": answer.ratio})
        return
    lines = [f"{_step_text(answer.direct)} multiplications"]
    if steps:
        lines.append(f"with a 1×1 bottleneck to {query.bottleneck} channels first:")
        lines += [f"  {_step_text(step)}" for step in steps]
        lines.append(f"  total {answer.bottleneck_macs:,} multiplications: {_ratio_text(answer.ratio)}")
    stdout.write("\n".join(lines) + "\n")


# --- a conv or pooling worked out by hand --------------------------------------------------------

@dataclass(frozen=True)
class ValuesAnswer:
    geometry: Geometry
    input: Matrix
    kernel: Matrix | None  # None for pooling
    output: Matrix
    error: Matrix | None  # the upstream error, when backward is asked for
    input_error: Matrix | None = None
    kernel_gradient: Matrix | None = None
    bias_gradient: float | None = None

    @property
    def kind(self) -> str:
        return self.geometry.windows[0].kind


def _values(query: ShapeQuery) -> ValuesAnswer:
    from cnntool.shapecalc import values

    if (query.kernel is None) == (query.pool is None):
        raise ConfigError("--input needs --kernel (a conv) or --pool with --f (a pooling), one of them")
    if query.kernel is not None and query.f is not None:
        raise ConfigError("--kernel sets the kernel size; drop --f")
    a = values.parse_matrix(query.input, "--input")
    kernel = values.parse_matrix(query.kernel, "--kernel") if query.kernel is not None else None
    geo = values.geometry(_windows(query, 2, values.size_of(kernel) if kernel else None), values.size_of(a))
    error = values.parse_matrix(query.error, "--error") if query.error is not None else None
    if kernel is None:
        output = values.pool(a, geo)
        input_error = values.pool_backward(a, error, geo) if error else None
        return ValuesAnswer(geo, a, None, output, error, input_error)
    output = values.conv(a, kernel, geo)
    if error is None:
        return ValuesAnswer(geo, a, kernel, output, None)
    return ValuesAnswer(geo, a, kernel, output, error, *values.conv_backward(a, kernel, error, geo))


def _value_text(value: float) -> str:
    """Whole numbers without a decimal point (and no −0), others to 6 significant digits."""
    return str(int(value)) if math.isfinite(value) and value == int(value) else f"{value:.6g}"


def _matrix_lines(matrix: Matrix) -> list[str]:
    cells = [[_value_text(v) for v in row] for row in matrix]
    width = max(len(cell) for row in cells for cell in row)
    return ["  " + " ".join(cell.rjust(width) for cell in row) for row in cells]


def _values_heading(answer: ValuesAnswer) -> str:
    rows, cols = answer.geometry.windows
    names = {"conv": "conv", "max": "max pooling", "avg": "average pooling"}
    formulas = [result.formula for result in answer.geometry.results]
    formula = formulas[0] if formulas[0] == formulas[1] else f"H: {formulas[0]}, W: {formulas[1]}"
    size = "×".join(map(str, (len(answer.input), len(answer.input[0]))))
    out = "×".join(map(str, answer.geometry.out))
    return f"{names[answer.kind]} {rows.f}×{cols.f} on {size} → {out} ({formula}):"


def _backward_lines(answer: ValuesAnswer) -> list[str]:
    from cnntool.shapecalc.values import is_full_conv_rule

    if answer.kind == "conv":
        rule = " = conv(∂L/∂Z, rot180(W), full)" if is_full_conv_rule(answer.geometry) else ""
        return ([f"input error ∂L/∂A{rule}:", *_matrix_lines(answer.input_error),
                 "kernel gradient ∂L/∂W = conv(A, ∂L/∂Z):", *_matrix_lines(answer.kernel_gradient),
                 f"bias gradient ∂L/∂b = Σ ∂L/∂Z = {_value_text(answer.bias_gradient)}"])
    rule = "each error to its window's maximum" if answer.kind == "max" else "each error shared equally by its window"
    return [f"input error ∂L/∂A ({rule}):", *_matrix_lines(answer.input_error)]


def _print_values(answer: ValuesAnswer, query: ShapeQuery, stdout: TextIO) -> None:
    if query.fmt is ShapeFormat.json:
        windows, results = answer.geometry.windows, answer.geometry.results
        _write_json(stdout, {
            "layer": answer.kind, "kernel_size": [w.f for w in windows], "stride": [w.s for w in windows],
            "padding": [list(r.pad) for r in results], "dilation": [w.d for w in windows],
            "input": answer.input, "kernel": answer.kernel, "output": answer.output, "error": answer.error,
            "input_error": answer.input_error, "kernel_gradient": answer.kernel_gradient,
            "bias_gradient": answer.bias_gradient,
        })
        return
    lines = [_values_heading(answer), *_matrix_lines(answer.output)]
    if answer.error is not None:
        lines += _backward_lines(answer)
    stdout.write("\n".join(lines) + "\n")
