"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1) as a torch module.

The file lists layers but not the residual wiring, which follows dlib's published network definition:
a stem (conv 7×7/2, affine, relu, max-pool 3×3/2), then residual units "conv, affine, relu, conv, affine,
add, relu". A unit whose layer run holds an avg_pool before the add is a down-sampling unit: the pool
(2×2/2) applies to the unit's input on the shortcut, not to the main branch. Then a global average pool
and a 256→128 linear map without bias. The descriptor is that raw 128-vector (dlib does not normalize it).
"""

from __future__ import annotations

import torch
from torch import nn

from cnntool.dlib import DnnFile

from .layers import residual_add, to_module

INPUT_SIZE = 150


class ResidualUnit(nn.Module):
    def __init__(self, main: list[nn.Module], shortcut: nn.Module | None):
        super().__init__()
        self.main = nn.Sequential(*main)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x):
        return torch.relu(residual_add(self.main(x), self.shortcut(x)))


class FaceResNet(nn.Module):
    def __init__(self, net: DnnFile):
        super().__init__()
        inp = net.input
        self.register_buffer("mean", torch.tensor([inp["avg_red"], inp["avg_green"], inp["avg_blue"]]).view(1, 3, 1, 1))
        layers = net.layers
        kinds = [l.kind for l in layers]
        if kinds[:4] != ["con", "affine", "relu", "max_pool"] or kinds[-2:] != ["avg_pool", "fc"]:
            raise ValueError(f"not the dlib face ResNet layout: {kinds[:4]} … {kinds[-2:]}")
        self.stem = nn.Sequential(*(to_module(l) for l in layers[:4]))
        units, run = [], []
        for layer in layers[4:-2]:
            if layer.kind == "add_prev":
                shortcut = next((to_module(l) for l in run if l.kind == "avg_pool"), None)
                units.append(ResidualUnit([to_module(l) for l in run if l.kind != "avg_pool"], shortcut))
                run = []
            elif layer.kind == "relu" and not run:
                continue  # the relu closing the previous unit (applied inside ResidualUnit)
            else:
                run.append(layer)
        if run:
            raise ValueError("dlib face ResNet: layers after the last residual add")
        self.units = nn.Sequential(*units)
        self.pool = to_module(layers[-2])
        self.fc = to_module(layers[-1])

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb: (N, 3, 150, 150) float pixel values 0..255 → (N, 128) descriptors."""
        x = (rgb - self.mean) / 256.0
        return self.fc(self.pool(self.units(self.stem(x))))
