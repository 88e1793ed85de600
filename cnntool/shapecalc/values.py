"""The lecture's small worked examples by hand: one 2D convolution (a cross-correlation, as CNNs compute it) or
max/average pooling of one matrix, forward, and backward from an upstream error. Pure Python: the matrices
are ones a person types on a command line, and the numbers come out exact for whole-number inputs.

Output (i, j) reads the input at rows i·s − p_top + u·d and columns j·s − p_left + v·d (u, v over the kernel);
positions outside the input are padding. Backward, from the upstream error E = ∂L/∂Z:
  conv   ∂L/∂A: each E[i, j] flows back through the weight W[u, v] that carried its input; at stride 1
         without padding that is conv(E, rot180(W), "full"). ∂L/∂W = conv(A, E), ∂L/∂b = Σ E.
  max    each E[i, j] goes to its window's largest input (the first one on ties, as torch picks).
  avg    each E[i, j] is shared equally by its window: E[i, j] / window size.
Padding counts as zeros for a conv and for average pooling (torch's count_include_pad), as −∞ for max pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnntool.errors import ConfigError
from cnntool.shapecalc.arithmetic import DimResult, Window, output_size

Matrix = tuple[tuple[float, ...], ...]
VALUE_KINDS = ("conv", "max", "avg")
# Matrices worked out by hand stay small; bounds keep a mistyped @FILE from reading or computing for long.
MAX_NUMBERS = 10_000
MAX_FILE_CHARS = 1_000_000


def parse_matrix(text: str, what: str) -> Matrix:
    """Rows separated by ';' or new lines, numbers by spaces or commas; @FILE reads the text from a file."""
    if text.startswith("@"):
        text = _read(Path(text[1:]), what)
    lines = [line for line in text.replace(";", "\n").splitlines() if line.strip(" \t,")]
    try:
        rows = tuple(tuple(float(v) for v in line.replace(",", " ").split()) for line in lines)
    except ValueError:
        raise ConfigError(f"{what} must be numbers, rows separated by ';' (\"1 2; 3 4\"), not {text.strip()!r}") \
            from None
    if not rows:
        raise ConfigError(f"{what} is empty")
    if sum(map(len, rows)) > MAX_NUMBERS:
        raise ConfigError(f"{what} has {sum(map(len, rows)):,} numbers; values are worked out for matrices of at "
                          f"most {MAX_NUMBERS:,}")
    if len({len(row) for row in rows}) != 1:
        raise ConfigError(f"{what}: rows of {', '.join(str(len(row)) for row in rows)} numbers; every row needs "
                          "as many")
    return rows


def _read(path: Path, what: str) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            text = file.read(MAX_FILE_CHARS + 1)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if len(text) > MAX_FILE_CHARS:
        raise ConfigError(f"{what}: {str(path)!r} is longer than {MAX_FILE_CHARS:,} characters; values are worked "
                          "out for small matrices")
    return text


def size_of(matrix: Matrix) -> tuple[int, int]:
    return len(matrix), len(matrix[0])


@dataclass(frozen=True)
class Geometry:
    """Where the windows of one layer sit on an input matrix: one Window and its result per dimension."""

    windows: tuple[Window, Window]
    results: tuple[DimResult, DimResult]

    @property
    def out(self) -> tuple[int, int]:
        return self.results[0].out, self.results[1].out

    def taps(self, i: int, j: int) -> list[tuple[int, int, int, int]]:
        """(u, v, row, column) of every kernel position of output (i, j); row/column may lie in the padding."""
        (rows, cols), (r_res, c_res) = self.windows, self.results
        top = i * rows.s - r_res.pad[0]
        left = j * cols.s - c_res.pad[0]
        return [(u, v, top + u * rows.d, left + v * cols.d) for u in range(rows.f) for v in range(cols.f)]

    def outputs(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.out[0]) for j in range(self.out[1])]


def geometry(windows: tuple[Window, Window], size: tuple[int, int]) -> Geometry:
    if any(w.kind not in VALUE_KINDS for w in windows):
        raise ConfigError("values are worked out for a conv, max pooling or average pooling only")
    return Geometry(windows, (output_size(windows[0], size[0]), output_size(windows[1], size[1])))


def _inside(matrix: Matrix, r: int, c: int) -> bool:
    return 0 <= r < len(matrix) and 0 <= c < len(matrix[0])


def _zeros(rows: int, cols: int) -> list[list[float]]:
    return [[0.0] * cols for _ in range(rows)]


def _frozen(rows: list[list[float]]) -> Matrix:
    return tuple(tuple(row) for row in rows)


def conv(a: Matrix, kernel: Matrix, geo: Geometry) -> Matrix:
    out = _zeros(*geo.out)
    for i, j in geo.outputs():
        out[i][j] = sum(kernel[u][v] * a[r][c] for u, v, r, c in geo.taps(i, j) if _inside(a, r, c))
    return _frozen(out)


def pool(a: Matrix, geo: Geometry) -> Matrix:
    out = _zeros(*geo.out)
    for i, j in geo.outputs():
        taps = geo.taps(i, j)
        if geo.windows[0].kind == "max":
            best = _arg_max(a, taps)
            out[i][j] = a[best[0]][best[1]] if best else float("-inf")
        else:
            out[i][j] = sum(a[r][c] for _, _, r, c in taps if _inside(a, r, c)) / _avg_divisor(a, geo, taps)
    return _frozen(out)


def _arg_max(a: Matrix, taps: list[tuple[int, int, int, int]]) -> tuple[int, int] | None:
    """The first largest input of a window, scanning row by row (torch's tie rule); padding never wins. None
    for a dilated window whose every tap falls in the padding (torch's output there is −∞)."""
    best = None
    for _, _, r, c in taps:
        if _inside(a, r, c) and (best is None or a[r][c] > a[best[0]][best[1]]):
            best = (r, c)
    return best


def _avg_divisor(a: Matrix, geo: Geometry, taps: list[tuple[int, int, int, int]]) -> int:
    """The window's size, padding included, but not the part a ceil-mode window hangs past the padding
    (torch's count_include_pad rule)."""
    r_res, c_res = geo.results
    row_end, col_end = len(a) + r_res.pad[1], len(a[0]) + c_res.pad[1]
    return len({r for _, _, r, _ in taps if r < row_end}) * len({c for _, _, _, c in taps if c < col_end})


def _check_error(error: Matrix, geo: Geometry) -> None:
    if size_of(error) != geo.out:
        raise ConfigError(f"the upstream error is {'×'.join(map(str, size_of(error)))} but the output is "
                          f"{'×'.join(map(str, geo.out))}: they must match")


def conv_backward(a: Matrix, kernel: Matrix, error: Matrix, geo: Geometry) -> tuple[Matrix, Matrix, float]:
    """∂L/∂A, ∂L/∂W and ∂L/∂b of Z = conv(A, W) + b for the upstream error ∂L/∂Z."""
    _check_error(error, geo)
    input_error = _zeros(*size_of(a))
    kernel_gradient = _zeros(*size_of(kernel))
    for i, j in geo.outputs():
        for u, v, r, c in geo.taps(i, j):
            if _inside(a, r, c):
                input_error[r][c] += error[i][j] * kernel[u][v]
                kernel_gradient[u][v] += error[i][j] * a[r][c]
    return _frozen(input_error), _frozen(kernel_gradient), sum(map(sum, error))


def pool_backward(a: Matrix, error: Matrix, geo: Geometry) -> Matrix:
    """∂L/∂A of max or average pooling for the upstream error ∂L/∂Z."""
    _check_error(error, geo)
    input_error = _zeros(*size_of(a))
    for i, j in geo.outputs():
        taps = geo.taps(i, j)
        if geo.windows[0].kind == "max":
            best = _arg_max(a, taps)
            if best:
                input_error[best[0]][best[1]] += error[i][j]
            continue
        share = error[i][j] / _avg_divisor(a, geo, taps)
        for _, _, r, c in taps:
            if _inside(a, r, c):
                input_error[r][c] += share
    return _frozen(input_error)


def is_full_conv_rule(geo: Geometry) -> bool:
    """Whether ∂L/∂A is exactly conv(E, rot180(W), "full"): stride 1, no padding, no dilation."""
    return all(w.s == 1 and w.d == 1 for w in geo.windows) and all(r.pad == (0, 0) for r in geo.results)
