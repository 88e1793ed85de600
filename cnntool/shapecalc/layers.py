"""A compact, torch-free description of a layer chain, and what the chain does to a tensor shape:
each layer's output size, parameters, multiply-accumulates, receptive field and jump. stdlib only.

The grammar (case-insensitive; layers are separated by whitespace and/or commas; 1D, 2D or 3D follows
the input's number of spatial dimensions; every number marked DIMS is an int or one per dimension, 3x5):

  conv{F}[s{S}][p{P}][d{D}][b0]:{C}       convolution, C output channels; P is DIMS, same or valid;
                                          b0 = no bias                          conv5:6  conv7s2p3b0:64
  tconv{F}[s{S}][p{P}][d{D}][op{O}][b0]:{C}  transposed conv, O = output padding    tconv4s2p1:64
  max{F}[s{S}][p{P}][d{D}][c]             max pooling; stride defaults to F; c = ceil mode   max3s2c
  avg{F}[s{S}][p{P}][c]                   average pooling                       avg5s3
  l2pool{F}[s{S}][p{P}][c]                L2 pooling √(Σx²/|window|)            l2pool2
  gap | aap{K} | aap{H}x{W}               global / adaptive average pooling     aap6x6
  flatten | fc:{N} | fc:{N}:b0            fully connected (flattens first)      fc:120
  bn                                      batch norm: 2·C parameters
  relu tanh sigmoid softmax dropout dropout{P} lcn lcn{K} lrn lrn{K}     shape-preserving, no parameters
  {K}*( … )                               the group repeated K times            2*(conv3p1:64 relu)
  res( body | shortcut )  res( body )     residual: body(x) + shortcut(x); identity shortcut if omitted
  cat( branch | branch | … )              parallel branches concatenated along channels (Inception)

MACs count the multiply-accumulates of conv, transposed conv and fc layers only: a conv makes
out_elements·f_h·f_w·c_in of them, a transposed conv in_elements·f_h·f_w·c_out, an fc in·out.
Receptive field and jump: r_out = r_in + (f−1)·d·j_in, j_out = j_in·s (j_in/s for a transposed conv);
res and cat take the largest over their branches; global pooling, flatten and fc see the whole map.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction

from cnntool.errors import ConfigError
from cnntool.shapecalc.arithmetic import DIM_NAMES, Window, drop_warning, format_shape, output_size, per_dim

PLAIN_LAYERS = ("relu", "tanh", "sigmoid", "softmax", "bn", "gap", "flatten")


# --- parse tree --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """One layer as written; numbers given per dimension stay tuples until the input's rank is known."""

    text: str
    kind: str  # conv tconv max avg l2 gap aap flatten fc bn relu tanh sigmoid softmax dropout lcn lrn
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] | None = None  # None: 1 for convolutions, the kernel for pooling
    padding: tuple[int, ...] | str = (0,)
    dilation: tuple[int, ...] = (1,)
    output_padding: tuple[int, ...] = (0,)
    ceil: bool = False
    bias: bool = True
    out_channels: int | None = None  # conv/tconv channels, fc features
    size: tuple[int, ...] = ()  # adaptive pooling target


@dataclass(frozen=True)
class Residual:
    body: tuple
    shortcut: tuple | None  # None: identity


@dataclass(frozen=True)
class Concat:
    branches: tuple


_TOKEN = re.compile(
    r"(?P<space>[\s,]+)"
    r"|(?P<open>(?P<block>res|cat|\d+\s*\*)\s*\()"
    r"|(?P<close>\))"
    r"|(?P<bar>\|)"
    r"|(?P<word>[a-z0-9.:]+)"
)
_DIMS = r"\d+(?:x\d+)*"
_CONV = re.compile(rf"(?P<kind>t?conv)(?P<kernel>{_DIMS})(?P<options>[a-z0-9]*):(?P<channels>\d+)")
_POOL = re.compile(rf"(?P<kind>max|avg|l2(?=pool))(?:pool)?(?P<kernel>{_DIMS})(?P<options>[a-z0-9]*)")
_OPTION = re.compile(rf"op(?P<op>{_DIMS})|s(?P<s>{_DIMS})|p(?P<p>{_DIMS}|same|valid)|d(?P<d>{_DIMS})|(?P<b0>b0)|(?P<c>c)")
_FC = re.compile(r"fc:(?P<features>\d+)(?P<b0>:b0)?")
_AAP = re.compile(rf"aap(?P<size>{_DIMS})")
_DROPOUT = re.compile(r"dropout(?P<p>\d*\.?\d*)")
_NORM = re.compile(r"(?P<kind>lcn|lrn)\d*")

# Which options each kind takes, and how its form reads in an error message.
_ALLOWED_OPTIONS = {
    "conv": ("s", "p", "d", "b0"),
    "tconv": ("s", "p", "d", "op", "b0"),
    "max": ("s", "p", "d", "c"),
    "avg": ("s", "p", "c"),
    "l2": ("s", "p", "c"),
}
_FORMS = {
    "conv": "conv{F}[s{S}][p{P}][d{D}][b0]:{C}",
    "tconv": "tconv{F}[s{S}][p{P}][d{D}][op{O}][b0]:{C}",
    "max": "max{F}[s{S}][p{P}][d{D}][c]",
    "avg": "avg{F}[s{S}][p{P}][c]",
    "l2": "l2pool{F}[s{S}][p{P}][c]",
}


def parse(layers: str) -> tuple:
    """The parse tree of a layer string: a tuple of Layer, Residual and Concat nodes (repeats expanded)."""
    tokens = _tokenize(layers.lower())
    nodes, end = _parse_sequence(tokens, 0)
    if end < len(tokens):
        _, text, pos = tokens[end]
        raise ConfigError(f"layer spec: unexpected '{text}' at character {pos + 1}")
    if not nodes:
        raise ConfigError("layer spec is empty")
    return nodes


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ConfigError(f"layer spec: unexpected character {text[pos]!r} at character {pos + 1}")
        if match.lastgroup != "space":
            kind = "open" if match.group("open") else match.lastgroup
            value = re.sub(r"\s+", "", match.group("block")) if kind == "open" else match.group()
            tokens.append((kind, value, pos))
        pos = match.end()
    return tokens


def _parse_sequence(tokens: list, i: int) -> tuple[tuple, int]:
    """Layers up to the next `|`, `)` or the end."""
    nodes: list = []
    while i < len(tokens) and tokens[i][0] in ("word", "open"):
        kind, text, pos = tokens[i]
        if kind == "word":
            nodes.append(parse_layer(text, pos))
            i += 1
            continue
        branches, i = _parse_branches(tokens, i + 1, text, pos)
        if text == "res":
            nodes.append(_residual(branches, pos))
        elif text == "cat":
            nodes.append(Concat(branches))
        else:
            nodes.extend(_repeat(text, branches, pos))
    return tuple(nodes), i


def _parse_branches(tokens: list, i: int, opener: str, pos: int) -> tuple[tuple, int]:
    """`a b | c d )` after an opening `res(`, `cat(` or `K*(`: the branches and the index after `)`."""
    branches = []
    while True:
        branch, i = _parse_sequence(tokens, i)
        if not branch:
            raise ConfigError(f"layer spec: empty branch in '{opener}(' at character {pos + 1}")
        branches.append(branch)
        if i >= len(tokens):
            raise ConfigError(f"layer spec: '{opener}(' at character {pos + 1} is never closed")
        if tokens[i][0] == "close":
            return tuple(branches), i + 1
        i += 1  # a bar


def _residual(branches: tuple, pos: int) -> Residual:
    if len(branches) > 2:
        raise ConfigError(f"layer spec: res( body | shortcut ) at character {pos + 1} has {len(branches)} branches")
    return Residual(branches[0], branches[1] if len(branches) == 2 else None)


def _repeat(opener: str, branches: tuple, pos: int) -> tuple:
    count = int(opener.rstrip("*"))
    if len(branches) != 1:
        raise ConfigError(f"layer spec: '|' inside the repeat at character {pos + 1}; use cat( … ) or res( … )")
    if count < 1:
        raise ConfigError(f"layer spec: repeat count at character {pos + 1} must be at least 1")
    return branches[0] * count


def parse_layer(text: str, pos: int = 0) -> Layer:
    """One layer word such as conv3s2p1:64, max3s2c or fc:10:b0."""
    if text in PLAIN_LAYERS:
        return Layer(text, text)
    for pattern, build in ((_CONV, _windowed), (_POOL, _windowed), (_FC, _fc), (_AAP, _aap),
                           (_DROPOUT, _dropout), (_NORM, _norm)):
        match = pattern.fullmatch(text)
        if match:
            return build(text, match, pos)
    raise ConfigError(f"layer spec: unknown layer '{text}' at character {pos + 1} (see `cnntool shape-calc --help`)")


def _dims(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split("x"))


def _windowed(text: str, match: re.Match, pos: int) -> Layer:
    kind = match.group("kind")
    options, at = {}, 0
    option_text = match.group("options")
    while at < len(option_text):
        option = _OPTION.match(option_text, at)
        name = option.lastgroup if option else None
        if name is None or name not in _ALLOWED_OPTIONS[kind] or name in options:
            raise ConfigError(f"layer spec: bad layer '{text}' at character {pos + 1}; expected {_FORMS[kind]}")
        options[name] = option.group(name)
        at = option.end()
    padding = options.get("p", "0")
    channels = match.groupdict().get("channels")
    if channels is not None:
        _require_channels(int(channels), text, pos)
    return Layer(
        text,
        kind,
        kernel=_dims(match.group("kernel")),
        stride=_dims(options["s"]) if "s" in options else None,
        padding=padding if padding in ("same", "valid") else _dims(padding),
        dilation=_dims(options.get("d", "1")),
        output_padding=_dims(options.get("op", "0")),
        ceil="c" in options,
        bias="b0" not in options,
        out_channels=int(channels) if channels is not None else None,
    )


def _fc(text: str, match: re.Match, pos: int) -> Layer:
    features = _require_channels(int(match.group("features")), text, pos)
    return Layer(text, "fc", out_channels=features, bias=not match.group("b0"))


def _require_channels(count: int, text: str, pos: int) -> int:
    if count < 1:
        raise ConfigError(f"layer spec: '{text}' at character {pos + 1} needs at least 1 output channel")
    return count


def _aap(text: str, match: re.Match, pos: int) -> Layer:
    return Layer(text, "aap", size=_dims(match.group("size")))


def _dropout(text: str, match: re.Match, pos: int) -> Layer:
    rate = match.group("p")
    if rate and (rate == "." or not 0 <= float(rate) < 1):
        raise ConfigError(f"layer spec: dropout rate in '{text}' at character {pos + 1} must be in [0, 1)")
    return Layer(text, "dropout")


def _norm(text: str, match: re.Match, pos: int) -> Layer:
    return Layer(text, match.group("kind"))


# --- evaluation --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One layer of an evaluated chain. Layers inside res/cat have depth ≥ 1 and are followed by the
    block's merge row (depth of the block), whose params and MACs are 0 so totals add up once."""

    name: str
    output_shape: tuple[int, ...]  # (C, *spatial), or (features,) once flattened
    params: int
    macs: int
    rf: tuple[Fraction, ...]  # receptive field per spatial dimension, in input pixels
    jump: tuple[Fraction, ...]  # distance between neighbouring outputs, in input pixels
    depth: int = 0
    path: str = ""  # where a nested layer sits, e.g. "res1.body" or "cat2.branch3"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chain:
    input_shape: tuple[int, ...]
    rows: tuple[Row, ...]

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(row.macs for row in self.rows)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.rows[-1].output_shape


@dataclass(frozen=True)
class _State:
    """What flows from layer to layer."""

    channels: int
    spatial: tuple[int, ...]  # sizes before flattening, kept for the receptive field
    rf: tuple[Fraction, ...]
    jump: tuple[Fraction, ...]
    flat: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels,) if self.flat else (self.channels, *self.spatial)


@dataclass
class _Walk:
    """Bookkeeping while rows are produced: rows so far and a counter that names res/cat blocks."""

    rows: list[Row] = field(default_factory=list)
    blocks: int = 0


def describe(layers: str, input_shape: tuple[int, ...]) -> Chain:
    """Evaluate a layer string on an input of shape (C, H, W), (C, L) or (C, D, H, W)."""
    shape = tuple(input_shape)
    if not 2 <= len(shape) <= 4 or not all(isinstance(v, int) and v >= 1 for v in shape):
        raise ConfigError(f"input shape must be (C, *spatial) with 1-3 spatial sizes ≥ 1, not {input_shape}")
    ones = tuple(Fraction(1) for _ in shape[1:])
    walk = _Walk()
    _run(parse(layers), _State(shape[0], shape[1:], ones, ones), walk, depth=0, path="")
    return Chain(shape, tuple(walk.rows))


def _run(nodes: tuple, state: _State, walk: _Walk, depth: int, path: str) -> _State:
    for node in nodes:
        if isinstance(node, Layer):
            state = _run_layer(node, state, walk, depth, path)
        else:
            state = _run_block(node, state, walk, depth, path)
    return state


def _run_layer(layer: Layer, state: _State, walk: _Walk, depth: int, path: str) -> _State:
    try:
        new_state, params, macs, warnings = _apply(layer, state)
    except ConfigError as exc:
        raise ConfigError(f"layer {len(walk.rows) + 1} '{layer.text}': {exc}") from None
    walk.rows.append(Row(layer.text, new_state.shape, params, macs, new_state.rf, new_state.jump,
                         depth, path, warnings))
    return new_state


def _run_block(block: Residual | Concat, state: _State, walk: _Walk, depth: int, path: str) -> _State:
    walk.blocks += 1
    kind = "res" if isinstance(block, Residual) else "cat"
    name = f"{path}/{kind}{walk.blocks}" if path else f"{kind}{walk.blocks}"
    if isinstance(block, Residual):
        labels = ("body", "shortcut")
        branches = (block.body,) if block.shortcut is None else (block.body, block.shortcut)
    else:
        labels = tuple(f"branch{i}" for i in range(1, len(block.branches) + 1))
        branches = block.branches
    outs = [_run(branch, state, walk, depth + 1, f"{name}.{label}") for branch, label in zip(branches, labels)]
    if isinstance(block, Residual) and block.shortcut is None:
        outs.append(state)
    try:
        merged = _merge_residual(outs) if kind == "res" else _merge_concat(outs)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    rf = tuple(max(values) for values in zip(*(out.rf for out in outs)))
    jump = tuple(max(values) for values in zip(*(out.jump for out in outs)))
    merged = replace(merged, rf=rf, jump=jump)
    title = f"res: body + {'shortcut' if block.shortcut else 'identity'}" if kind == "res" else \
        f"cat: {len(outs)} branches"
    walk.rows.append(Row(title, merged.shape, 0, 0, rf, jump, depth, path))
    return merged


def _merge_residual(outs: list[_State]) -> _State:
    body, shortcut = outs
    if body.shape != shortcut.shape:
        raise ConfigError(f"the body gives {format_shape(body.shape)} but the shortcut "
                          f"{format_shape(shortcut.shape)}; they must match to be added")
    return body


def _merge_concat(outs: list[_State]) -> _State:
    first = outs[0]
    for out in outs[1:]:
        if out.shape[1:] != first.shape[1:] or out.flat != first.flat:
            raise ConfigError(f"branches give {format_shape(first.shape)} and {format_shape(out.shape)}; "
                              "they must agree in every size but the channels")
    return replace(first, channels=sum(out.channels for out in outs))


def _apply(layer: Layer, state: _State) -> tuple[_State, int, int, tuple[str, ...]]:
    """The state after one layer, its parameters, MACs and warnings."""
    if layer.kind in ("conv", "tconv", "max", "avg", "l2"):
        return _apply_windowed(layer, _spatial(state))
    if layer.kind == "gap":
        return _adaptive(_spatial(state), tuple(1 for _ in state.spatial)), 0, 0, ()
    if layer.kind == "aap":
        return _adaptive(_spatial(state), per_dim(layer.size, len(state.spatial), "size")), 0, 0, ()
    if layer.kind == "flatten":
        return _flatten(state), 0, 0, ()
    if layer.kind == "fc":
        flat = _flatten(state)
        bias = layer.out_channels if layer.bias else 0
        params = flat.channels * layer.out_channels + bias
        return replace(flat, channels=layer.out_channels), params, flat.channels * layer.out_channels, ()
    if layer.kind == "bn":
        return state, 2 * state.channels, 0, ()
    return state, 0, 0, ()  # activations, dropout, local normalizations


def _spatial(state: _State) -> _State:
    if state.flat:
        raise ConfigError("needs a spatial input, but the input was already flattened")
    return state


def _apply_windowed(layer: Layer, state: _State) -> tuple[_State, int, int, tuple[str, ...]]:
    dims = len(state.spatial)
    kernel = per_dim(layer.kernel, dims, "kernel")
    stride = per_dim(layer.stride, dims, "stride") if layer.stride else \
        (kernel if layer.kind in ("max", "avg", "l2") else (1,) * len(kernel))
    padding = layer.padding if isinstance(layer.padding, str) else per_dim(layer.padding, dims, "padding")
    dilation = per_dim(layer.dilation, dims, "dilation")
    output_padding = per_dim(layer.output_padding, dims, "output padding")
    sizes, rf, jump, warnings = [], [], [], []
    for i, n in enumerate(state.spatial):
        p = padding if isinstance(padding, str) else padding[i]
        window = Window(layer.kind, kernel[i], stride[i], p, dilation[i], layer.ceil, output_padding[i], dims)
        result = output_size(window, n)
        sizes.append(result.out)
        rf.append(state.rf[i] + (kernel[i] - 1) * dilation[i] * state.jump[i])
        jump.append(state.jump[i] / stride[i] if layer.kind == "tconv" else state.jump[i] * stride[i])
        if result.dropped:
            warnings.append(f"{DIM_NAMES[dims][i]}: {drop_warning(window, result)}")
    channels = layer.out_channels if layer.kind in ("conv", "tconv") else state.channels
    new_state = _State(channels, tuple(sizes), tuple(rf), tuple(jump))
    params = macs = 0
    if layer.kind in ("conv", "tconv"):
        per_filter = math.prod(kernel) * state.channels
        params = per_filter * channels + (channels if layer.bias else 0)
        # a conv computes every output from a kernel; a transposed conv spreads every input over one
        positions = math.prod(sizes) if layer.kind == "conv" else math.prod(state.spatial)
        macs = positions * per_filter * channels
    return new_state, params, macs, tuple(warnings)


def _adaptive(state: _State, target: tuple[int, ...]) -> _State:
    """Adaptive average pooling as torch does it: window i spans [⌊i·n/K⌋, ⌈(i+1)·n/K⌉)."""
    if any(k < 1 for k in target):
        raise ConfigError("adaptive pooling sizes must be at least 1")
    rf, jump = [], []
    for n, k, r, j in zip(state.spatial, target, state.rf, state.jump):
        widest = max(-(-(i + 1) * n // k) - i * n // k for i in range(k))
        rf.append(r + (widest - 1) * j)
        jump.append(j * Fraction(n, k))
    return _State(state.channels, target, tuple(rf), tuple(jump))


def _flatten(state: _State) -> _State:
    """Every output sees the whole map, like a global pooling window."""
    if state.flat:
        return state
    rf = tuple(r + (n - 1) * j for n, r, j in zip(state.spatial, state.rf, state.jump))
    jump = tuple(j * n for n, j in zip(state.spatial, state.jump))
    return _State(state.channels * math.prod(state.spatial), state.spatial, rf, jump, flat=True)
