"""Field layouts of the dlib dnn layer objects found in the face models, keyed by their version string.

Each reader gets the stream positioned just after the name and returns (attributes, arrays). Weights come
out in PyTorch's layouts: conv (out, in, kh, kw), linear (out, in), per-channel vectors (C,).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .stream import DlibFormatError, Stream


@dataclass
class Layer:
    name: str  # the version string as written, e.g. "con_4"
    kind: str  # "con", "relu", "affine", "bn_con", "max_pool", "avg_pool", "add_prev", "fc"
    attrs: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


def _learning_rates(s: Stream, n: int = 4) -> None:
    # Training-only multipliers; read past them.
    for _ in range(n):
        s.float()


def _split(params: np.ndarray, *shapes) -> list[np.ndarray]:
    flat, out, at = params.reshape(-1), [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(flat[at:at + size].reshape(shape))
        at += size
    if at != flat.size:
        raise DlibFormatError(f"params hold {flat.size} values, the layer's parts {at}")
    return out


def _con(s: Stream, name: str) -> Layer:
    params = s.tensor()
    num_filters = s.int()
    nr, nc, stride_y, stride_x, pad_y, pad_x = (s.int() for _ in range(6))
    filters = s.alias_tensor()
    s.alias_tensor()  # biases: num_filters values after the filters
    _learning_rates(s)
    use_bias = s.bool() if name in ("con_5", "con_6") else True
    use_relu = s.bool() if name == "con_6" else False
    if use_relu:
        raise DlibFormatError("con_ with a fused relu is not supported")
    w, b = _split(params, filters, (num_filters if use_bias else 0,))
    arrays = {"weight": w}
    if use_bias:
        arrays["bias"] = b
    attrs = dict(kernel=(nr, nc), stride=(stride_y, stride_x), padding=(pad_y, pad_x), out_channels=num_filters)
    return Layer(name, "con", attrs, arrays)


def _affine(s: Stream, name: str) -> Layer:
    params = s.tensor()
    gamma = s.alias_tensor()
    beta = s.alias_tensor()
    mode = s.int()
    disabled = s.bool() if name == "affine_2" else False
    g, b = _split(params, gamma, beta)
    return Layer(name, "affine", {"mode": mode, "disabled": disabled}, {"weight": g.reshape(-1), "bias": b.reshape(-1)})


def _bn(s: Stream, name: str) -> Layer:
    params = s.tensor()
    gamma = s.alias_tensor()
    beta = s.alias_tensor()
    for _ in range(2):  # batch statistics of the last training step
        s.tensor()
    running_mean = s.tensor()
    running_var = s.tensor()
    s.int()  # num_updates
    s.int()  # running_stats_window_size
    _learning_rates(s)
    eps = s.float()
    g, b = _split(params, gamma, beta)
    arrays = {"weight": g.reshape(-1), "bias": b.reshape(-1),
              "running_mean": running_mean.reshape(-1), "running_var": running_var.reshape(-1)}
    return Layer(name, "bn_con" if name == "bn_con2" else "bn_fc", {"eps": eps}, arrays)


def _pool(kind: str):
    def read(s: Stream, name: str) -> Layer:
        nr, nc, stride_y, stride_x, pad_y, pad_x = (s.int() for _ in range(6))
        return Layer(name, kind, dict(kernel=(nr, nc), stride=(stride_y, stride_x), padding=(pad_y, pad_x)))
    return read


def _fc(s: Stream, name: str) -> Layer:
    num_outputs, num_inputs = s.int(), s.int()
    params = s.tensor()
    weights = s.alias_tensor()
    s.alias_tensor()  # biases
    bias_mode = s.int()  # 0: with bias, 1: without
    _learning_rates(s)
    use_bias = s.bool() if name == "fc_3" else True
    has_bias = bias_mode == 0 and use_bias
    w, b = _split(params, weights, (num_outputs if bias_mode == 0 else 0,))
    arrays = {"weight": w.reshape(num_inputs, num_outputs).T.copy()}  # dlib multiplies x·W with W (in, out)
    if has_bias:
        arrays["bias"] = b
    return Layer(name, "fc", {"in_features": num_inputs, "out_features": num_outputs}, arrays)


def _relu(s: Stream, name: str) -> Layer:
    disabled = s.bool() if name == "relu_2" else False
    return Layer(name, "relu", {"disabled": disabled})


def _add_prev(s: Stream, name: str) -> Layer:
    return Layer(name, "add_prev")


READERS = {
    "con_4": _con, "con_5": _con, "con_6": _con,
    "affine_": _affine, "affine_2": _affine,
    "bn_con2": _bn, "bn_fc2": _bn,
    "max_pool_2": _pool("max_pool"), "avg_pool_2": _pool("avg_pool"),
    "fc_2": _fc, "fc_3": _fc,
    "relu_": _relu, "relu_2": _relu,
    "add_prev_": _add_prev,
}


def read_layer(s: Stream) -> Layer:
    at = s.pos
    name = s.string()
    reader = READERS.get(name)
    if reader is None:
        raise DlibFormatError(f"unsupported dlib layer {name!r} at byte {at}")
    return reader(s, name)
