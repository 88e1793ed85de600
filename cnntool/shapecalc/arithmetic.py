"""Output-size arithmetic of one conv, pooling or transposed-conv layer, one spatial dimension at a time,
and solving that arithmetic for a missing value. stdlib only.

Torch is the reference: the formulas, the ceil-mode rule and the padding limits below are the ones
torch.nn's Conv/ConvTranspose/MaxPool/AvgPool/LPPool layers apply, so a layer this module accepts is a
layer torch accepts, with the same output size. "same" padding follows torch for stride 1 and TensorFlow
(output = ⌈n/s⌉) for larger strides, where torch refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnntool.errors import ConfigError

CONV_KINDS = ("conv", "tconv")
POOL_KINDS = ("max", "avg", "l2")
KINDS = CONV_KINDS + POOL_KINDS
PADDING_WORDS = ("same", "valid")

Padding = int | str  # an int, "same" or "valid"
DIM_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass(frozen=True)
class Window:
    """One spatial dimension of a sliding-window layer: kernel f, stride s, padding p, dilation d."""

    kind: str
    f: int
    s: int = 1
    p: Padding = 0
    d: int = 1
    ceil: bool = False  # pooling only: ⌈…⌉ instead of ⌊…⌋
    output_padding: int = 0  # transposed conv only
    spatial_dims: int = 2  # torch's 3D average pooling has one more rule (below)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown layer kind {self.kind!r}; valid: {', '.join(KINDS)}")
        _require(self.f >= 1, f"kernel size must be at least 1, not {self.f}")
        _require(self.s >= 1, f"stride must be at least 1, not {self.s}")
        _require(self.d >= 1, f"dilation must be at least 1, not {self.d}")
        if isinstance(self.p, str):
            _require(self.p in PADDING_WORDS, f"padding must be a number, same or valid, not {self.p!r}")
        else:
            _require(self.p >= 0, f"padding must be at least 0, not {self.p}")
        _require(self.output_padding >= 0, f"output padding must be at least 0, not {self.output_padding}")
        if self.kind != "tconv":
            _require(self.output_padding == 0, "output padding applies to transposed convolutions only")
        if self.kind in ("avg", "l2"):
            _require(self.d == 1, f"{self.kind} pooling has no dilation")
        if self.kind in CONV_KINDS:
            _require(not self.ceil, "ceil mode applies to pooling only")

    @property
    def span(self) -> int:
        """How many input positions one window covers: d·(f−1)+1."""
        return self.d * (self.f - 1) + 1


@dataclass(frozen=True)
class DimResult:
    """One dimension of a layer applied to an input of size n."""

    n: int
    out: int
    pad: tuple[int, int]  # padding before and after
    output_padding: int
    dropped: int  # trailing positions of the padded input that no window reaches (floor mode)
    formula: str  # the formula with the numbers filled in, ending in "= out"
    notes: tuple[str, ...] = ()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def output_size(window: Window, n: int) -> DimResult:
    """The layer's output size along one dimension of size n (ConfigError where torch would refuse)."""
    _require(n >= 1, f"input size must be at least 1, not {n}")
    if window.kind == "tconv":
        return _transposed(window, n)
    return _sliding(window, n)


def _same_padding(window: Window, n: int) -> tuple[int, int]:
    """Total padding that makes the output ⌈n/s⌉ (torch's "same" for stride 1), the odd pixel after."""
    out = -(-n // window.s)
    total = max((out - 1) * window.s + window.span - n, 0)
    return total // 2, total - total // 2


def _sliding(window: Window, n: int) -> DimResult:
    f, s, d = window.f, window.s, window.d
    if window.p == "same":
        lo, hi = _same_padding(window, n)
    else:
        lo = hi = 0 if window.p == "valid" else window.p
        if window.kind in POOL_KINDS:
            _check_pool_padding(window, lo)
    if window.kind in ("avg", "l2") and window.spatial_dims == 3:
        _require(n >= f, f"3D {window.kind} pooling needs an input ({n}) at least as large as the kernel ({f}), "
                         "padding aside (torch's rule)")
    room = n + lo + hi - window.span  # how far the window can slide
    # ceil mode lets a last window hang over the end, even when it is the only one
    out = (room + s - 1) // s + 1 if window.ceil else room // s + 1
    _require(
        out >= 1,
        f"kernel {f}" + (f" (dilation {d}, span {window.span})" if d > 1 else "")
        + f" is larger than the padded input {n + lo + hi}",
    )
    if window.ceil:
        # torch: the last window must start inside the input or the left padding, never in the right padding
        corrected = (out - 1) * s >= n + lo
        out -= corrected
        dropped = 0
    else:
        dropped, corrected = room % s, False
    notes = ()
    if corrected:
        notes = ("ceil mode: the last window would start in the right padding, so it is dropped (torch's rule)",)
    return DimResult(n, out, (lo, hi), 0, dropped, _sliding_formula(window, n, lo, hi, out, corrected), notes)


def drop_warning(window: Window, result: DimResult) -> str:
    """Why edge pixels are lost: the window cannot land exactly on the end of the padded input."""
    room = result.n + sum(result.pad) - window.span
    return (f"n+2p−f = {room} is not divisible by s = {window.s}: the last {result.dropped} pixel(s) "
            "of the padded input are dropped")


def _check_pool_padding(window: Window, p: int) -> None:
    # torch refuses pooling padding above half the kernel (not the dilated span), so that no window
    # lies wholly in the padding
    _require(
        p <= window.f // 2,
        f"{window.kind} pooling padding {p} is more than half the kernel {window.f}; at most {window.f // 2}",
    )


def _sliding_formula(window: Window, n: int, lo: int, hi: int, out: int, corrected: bool) -> str:
    f, s, d = window.f, window.s, window.d
    pad = f"2·{lo}" if lo == hi else f"{lo} + {hi}"
    kernel = str(f) if d == 1 else f"{d}·({f}−1) − 1"
    inner = f"{n} + {pad} − {kernel}"
    if s == 1 and not window.ceil:
        return f"{inner} + 1 = {out}"
    left, right = ("⌈", "⌉") if window.ceil else ("⌊", "⌋")
    return f"{left}({inner})/{s}{right} + 1" + (" − 1" if corrected else "") + f" = {out}"


def _transposed(window: Window, n: int) -> DimResult:
    f, s, d = window.f, window.s, window.d
    if window.p == "same":
        p, op = _transposed_same(window)
    else:
        p, op = (0 if window.p == "valid" else window.p), window.output_padding
    _require(
        op < max(s, d),
        f"output padding {op} must be smaller than the stride ({s}) or the dilation ({d})",
    )
    out = (n - 1) * s - 2 * p + d * (f - 1) + op + 1
    _require(out >= 1, f"transposed conv output would be {out}: padding {p} is too large")
    kernel = f"({f}−1)" if d == 1 else f"{d}·({f}−1)"
    formula = f"({n}−1)·{s} − 2·{p} + {kernel} + {op} + 1 = {out}"
    return DimResult(n, out, (p, p), op, 0, formula)


def _transposed_same(window: Window) -> tuple[int, int]:
    """Padding and output padding that make a transposed conv's output n·s (TensorFlow's "same")."""
    excess = window.span - window.s  # 2p − output_padding must equal this
    if excess <= 0:
        return 0, -excess
    p = -(-excess // 2)
    op = 2 * p - excess
    _require(
        op < max(window.s, window.d),
        f"same padding for a transposed conv with kernel {window.f}, stride {window.s}, dilation "
        f"{window.d} would need asymmetric padding; give --p and --output-padding instead",
    )
    return p, op


def per_dim(values: tuple[int, ...], dims: int, what: str) -> tuple[int, ...]:
    """One value per spatial dimension: a single number applies to all of them."""
    if len(values) == 1:
        return values * dims
    if len(values) != dims:
        raise ConfigError(f"{what} {'x'.join(map(str, values))} has {len(values)} values "
                          f"but the input has {dims} spatial dimension(s)")
    return values


def format_shape(shape: tuple[int, ...]) -> str:
    """(C, H, W) in the lecture's order n_H×n_W×n_C; a flat vector as its length."""
    return "×".join(str(v) for v in (*shape[1:], shape[0]))


# --- solving for a missing value ---------------------------------------------------------------

UNKNOWNS = ("n", "f", "s", "p")


@dataclass(frozen=True)
class Solutions:
    """The values of one unknown that give the wanted output size."""

    unknown: str
    values: tuple[int, ...]  # every solution below `and_above`
    and_above: int | None = None  # when set, every value from here on is a solution too

    @property
    def exists(self) -> bool:
        return bool(self.values) or self.and_above is not None


def solve(unknown: str, out: int, *, kind: str, n: int | None = None, f: int | None = None,
          s: int | None = None, p: Padding | None = None, d: int = 1, ceil: bool = False,
          output_padding: int = 0) -> Solutions:
    """Every value of `unknown` (n, f, s or p) for which the layer turns size n into size out.

    Each unknown ranges over a bound past which the output either runs away from `out` or stays constant;
    a constant tail that matches is reported as `and_above` rather than as an endless list.
    """
    _require(unknown in UNKNOWNS, f"can solve for one of {', '.join(UNKNOWNS)}, not {unknown!r}")
    _require(out >= 1, f"wanted output size must be at least 1, not {out}")
    known = {"n": n, "f": f, "s": s, "p": p}
    missing = [name for name, value in known.items() if value is None and name != unknown]
    _require(not missing, f"solving for {unknown} needs {', '.join(missing)} too")
    _require(known[unknown] is None, f"{unknown} is both given and asked for")

    def gives_out(value: int) -> bool:
        values = {**known, unknown: value}
        try:
            window = Window(kind, values["f"], values["s"], values["p"], d, ceil, output_padding)
            return output_size(window, values["n"]).out == out
        except ConfigError:
            return False

    start = 0 if unknown == "p" else 1
    bound = _search_bound(unknown, out, n=n, f=f, s=s, p=p, d=d, output_padding=output_padding)
    values = [v for v in range(start, bound + 1) if gives_out(v)]
    if values and values[-1] == bound and all(gives_out(v) for v in (bound + 1, 2 * bound, 4 * bound)):
        tail_start = bound
        while tail_start - 1 in values:
            tail_start -= 1
        return Solutions(unknown, tuple(v for v in values if v < tail_start), tail_start)
    return Solutions(unknown, tuple(values))


def _search_bound(unknown: str, out: int, *, n, f, s, p, d, output_padding) -> int:
    """A value of the unknown past which no new solution can appear (see the formulas above)."""
    pad = n if p == "same" and n is not None else (p if isinstance(p, int) else 0)
    if unknown == "n":
        return max((out + 1) * s + d * f, out + 2 * pad + 1) + 2
    if unknown == "p":
        return max(out * s, n * s) + d * f + output_padding + 2
    # f and s: past the padded input (sliding) or the output (transposed) nothing changes any more
    return n + 2 * pad + out + (d * f if unknown == "s" else 0) + 2
