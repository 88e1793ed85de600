"""The R-CNN family's second stage, for the one box of classification with localization: cut the localizer's
box out of the image and classify the crop again with a classifier of its own, the "reader".

The reader is an ordinary classify model trained by `cnntool train classify` on crops that `cnntool data
crops` cuts, with `crop_boxes` below, around the training scenes' annotated boxes (jittered as predicted
boxes are). In the crop the object is large and centred whatever its size in the scene, and the reader's
capacity goes to telling the classes apart rather than to finding the object.

`BoxReader` runs the localizer, crops its box and multiplies the two class distributions (renormalised: a
product of experts, so a class either network rules out stays out). The box is the localizer's; so is p_c,
unless the reader also has R-CNN's background class (crops of `cnntool data crops --background`): then p_c
too is the renormalised product of the localizer's "object" and the reader's "not background", so either
network can veto. Its output is raw scores as one localizer's, so decode, the metrics and test-time shifts
read it unchanged.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from cnntool.models.yvector import CONTEXT, encode, interpret

def square_rois(boxes: Tensor, height: int, width: int, *, context: float = CONTEXT) -> Tensor:
    """Relative [b_x, b_y, b_h, b_w] rows → RoIAlign rows [image index, x1, y1, x2, y2] in pixels: a square
    of side `context` × the box's longer side, centred on the box, so the object keeps its aspect."""
    bx, by, bh, bw = boxes.float().unbind(1)
    half = torch.maximum(bh * height, bw * width) * context / 2
    cx, cy = bx * width, by * height
    index = torch.arange(len(boxes), dtype=half.dtype, device=boxes.device)
    return torch.stack([index, cx - half, cy - half, cx + half, cy + half], dim=1)


def crop_boxes(images: Tensor, boxes: Tensor, *, size: int, context: float = CONTEXT) -> Tensor:
    """One size×size crop per image (N, C, H, W) around its relative box (N, 4); outside the image is 0."""
    rois = square_rois(boxes, images.shape[-2], images.shape[-1], context=context)
    return roi_align(images, rois.to(images.dtype), size, sampling_ratio=2, aligned=True)


def _per_channel(values, channels: int) -> Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, channels, 1, 1)


class BoxReader(nn.Module):
    """localizer → crop of its box → reader; the class probabilities of both multiplied.

    The localizer's input is normalised with its own mean/std and the reader's with another; the crop is
    cut from the pixels (0..1) recovered from the localizer's input and normalised as the reader was trained.
    """

    def __init__(self, localizer: nn.Module, reader: nn.Module, *, crop: int, context: float,
                 localizer_stats: tuple[tuple[float, ...], tuple[float, ...]],
                 reader_stats: tuple[tuple[float, ...], tuple[float, ...]], background: int | None = None) -> None:
        super().__init__()
        self.localizer, self.reader = localizer, reader
        self.crop, self.context, self.background = crop, context, background
        channels = len(localizer_stats[0])
        if len(reader_stats[0]) != channels:
            raise ValueError(f"the reader reads {len(reader_stats[0])}-channel crops of {channels}-channel images")
        for name, values in zip(("pixel_mean", "pixel_std", "reader_mean", "reader_std"), (*localizer_stats, *reader_stats)):
            self.register_buffer(name, _per_channel(values, channels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        y_hat = interpret(self.localizer(x))
        pixels = x.float() * self.pixel_std + self.pixel_mean
        crops = crop_boxes(pixels, y_hat[:, 1:5], size=self.crop, context=self.context)
        read = self.reader(((crops - self.reader_mean) / self.reader_std).to(x.dtype)).float().log_softmax(1)
        present = y_hat[:, :1]
        if self.background is not None:
            empty = read[:, self.background]
            read = torch.cat([read[:, :self.background], read[:, self.background + 1:]], dim=1)
            # logit of the product of experts: the localizer's log-odds of an object plus the reader's
            present = (torch.logit(present.clamp(1e-6, 1 - 1e-6)) + read.logsumexp(1, keepdim=True) - empty[:, None]).sigmoid()
        classes = (y_hat[:, 5:].clamp_min(1e-6).log() + read).softmax(1)
        return encode(torch.cat([present, y_hat[:, 1:5], classes], dim=1))
