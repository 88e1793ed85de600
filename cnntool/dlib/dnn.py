"""Read a dlib dnn network file (loss layer + wrapped layers + input layer) without knowing its C++ type.

Byte order in the file: the loss wrapper and its details, then one version integer per wrapper from the
outside in (add_layer, tag, skip alike), then the input layer, then each computational layer's details in
forward order, each followed by its wrapper's bookkeeping (flags and cached tensors). Tags and skips leave
no bytes of their own there, so residual wiring is not recorded and must come from the network's definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .layers import Layer, read_layer
from .stream import DlibFormatError, Stream


@dataclass
class DnnFile:
    loss: dict
    input: dict
    layers: list[Layer] = field(default_factory=list)


def _read_loss(s: Stream) -> dict:
    if s.int() != 1:
        raise DlibFormatError("expected an add_loss_layer version 1 at the start of the file")
    name = s.string()
    if name == "loss_metric_":
        return {"name": name, "margin": 0.1, "dist_thresh": 0.75}
    if name == "loss_metric_2":
        return {"name": name, "margin": s.float(), "dist_thresh": s.float()}
    if name == "loss_mmod_":
        return {"name": name, **_read_mmod_options(s)}
    raise DlibFormatError(f"unsupported dlib loss layer {name!r}")


def _read_mmod_options(s: Stream) -> dict:
    version = s.int()
    if not 1 <= version <= 4:
        raise DlibFormatError(f"unknown mmod_options version {version}")
    if version == 1:
        windows = [{"width": s.int(), "height": s.int(), "label": ""}]
    else:
        windows = []
        for _ in range(s.int()):
            wv = s.int()
            win = {"width": s.int(), "height": s.int()}
            win["label"] = s.string() if wv == 2 else ""
            windows.append(win)
    opts = {"detector_windows": windows, "loss_per_false_alarm": s.float(),
            "loss_per_missed_target": s.float(), "truth_match_iou_threshold": s.float()}
    opts["overlaps_nms"] = {"iou_thresh": s.float(), "percent_covered_thresh": s.float()}
    opts["overlaps_ignore"] = {"iou_thresh": s.float(), "percent_covered_thresh": s.float()}
    if version >= 3:
        opts["assume_image_pyramid"] = s.byte()
    if version >= 4:
        opts["use_bounding_box_regression"] = s.bool()
        opts["bbr_lambda"] = s.float()
    return opts


def _read_input(s: Stream) -> dict:
    name = s.string()
    means = {"name": name, "avg_red": s.float(), "avg_green": s.float(), "avg_blue": s.float()}
    if name == "input_rgb_image_sized":
        means["nr"], means["nc"] = s.int(), s.int()
    elif name == "input_rgb_image_pyramid2":
        means["pyramid_padding"], means["pyramid_outer_padding"] = s.int(), s.int()
    elif name == "input_rgb_image_pyramid":
        means["pyramid_padding"], means["pyramid_outer_padding"] = 10, 11  # dlib's defaults for this version
    elif name != "input_rgb_image":
        raise DlibFormatError(f"unsupported dlib input layer {name!r}")
    return means


def _skip_bookkeeping(s: Stream) -> None:
    """Read past a wrapper's flags, cached tensors and (innermost wrapper only) sample expansion factor."""
    while not s.at_end() and not s.looks_like_name():
        at = s.pos
        if s.data[at] in (0x30, 0x31):
            s.bool()
        elif s.peek_int() == 2:
            s.tensor()
        else:
            s.int()  # sample expansion factor or a tag-on-input's version
        if s.pos == at:
            raise DlibFormatError(f"stuck at byte {at}")


def read_dnn(path) -> DnnFile:
    s = Stream.open(path)
    loss = _read_loss(s)
    while not s.looks_like_name():  # wrapper versions, outermost first
        s.int()
    net = DnnFile(loss=loss, input=_read_input(s))
    _skip_bookkeeping(s)
    while not s.at_end():
        net.layers.append(read_layer(s))
        _skip_bookkeeping(s)
    return net
