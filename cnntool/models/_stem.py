"""Shared helpers for the builders (imports torch)."""

from __future__ import annotations

from torch import nn


def check_common(*, num_classes: int, in_channels: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, not {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, not {in_channels}")


def replace_conv(conv: nn.Conv2d, *, in_channels: int, kernel_size: int | None = None,
                 stride: int | None = None, padding: int | None = None) -> nn.Conv2d:
    """A fresh conv like `conv` but with other input channels and/or geometry (same output channels and
    bias setting, so the rest of the network is untouched)."""
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size if kernel_size is None else kernel_size,
        stride=conv.stride if stride is None else stride,
        padding=conv.padding if padding is None else padding,
        bias=conv.bias is not None,
    )
