"""The lecture's classic networks: LeNet-5, AlexNet and VGG-16, layer by layer, and the CNN example (a
LeNet-5 on 32×32×3) with its table of activation sizes and parameters. The registered models are run through
torch with forward hooks and described by shape-calc; the references are the lecture's drawings and counts,
and for VGG-16 torchvision's own model."""

import math

import pytest
import torch
import torchvision

from cnntool.models import catalog
from cnntool.shapecalc.layers import describe

LENET5 = [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (120,), (84,), (10,)]
ALEXNET = [(55, 55, 96), (27, 27, 96), (27, 27, 256), (13, 13, 256), (13, 13, 384), (13, 13, 384), (13, 13, 256),
           (6, 6, 256), (4096,), (4096,), (1000,)]
VGG16 = ([(224, 224, 64)] * 2 + [(112, 112, 64)] + [(112, 112, 128)] * 2 + [(56, 56, 128)] + [(56, 56, 256)] * 3
         + [(28, 28, 256)] + [(28, 28, 512)] * 3 + [(14, 14, 512)] * 4 + [(7, 7, 512)] + [(4096,)] * 2 + [(1000,)])


def conv_params(f: int, c_in: int, c_out: int) -> int:
    return f * f * c_in * c_out + c_out


def fc_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def rows_in_lecture_order(chain, kinds=("conv", "max", "avg", "fc")) -> list[tuple[int, ...]]:
    """The chain's conv, pooling and fc rows as (H, W, C) or (F,), like the lecture's drawings."""
    shapes = [row.output_shape for row in chain.rows if row.name.startswith(kinds)]
    return [(*s[1:], s[0]) if len(s) == 3 else s for s in shapes]


def test_lecture_lenet5_shapes_through_the_registered_model(drawn_outputs):
    spec = catalog.get("lenet5")
    assert (spec.input.channels, *spec.input.size) == (1, 32, 32)
    assert drawn_outputs(spec.build(), (1, 32, 32)) == LENET5
    assert rows_in_lecture_order(describe(spec.layers, (1, 32, 32))) == LENET5


def test_lecture_lenet5_has_about_60k_parameters():
    lecture = (conv_params(5, 1, 6) + conv_params(5, 6, 16) + fc_params(400, 120) + fc_params(120, 84)
               + fc_params(84, 10))
    assert lecture == 61_706
    assert sum(p.numel() for p in catalog.get("lenet5").build().parameters()) == lecture


def test_lecture_cnn_example_activation_sizes_and_parameters():
    """The CNN example on 32×32×3: conv 5×5 6 → max 2 → conv 5×5 16 → max 2 → fc 120 → fc 84 → softmax 10, with
    its activation sizes n_H·n_W·n_C and parameters f·f·c_in·c_out + c_out worked out as the lecture's table does
    (pooling has none; most sit in the fc layers)."""
    chain = describe("conv5:6 max2 conv5:16 max2 fc:120 fc:84 fc:10", (3, 32, 32))
    assert [math.prod(row.output_shape) for row in chain.rows] == [28 * 28 * 6, 14 * 14 * 6, 10 * 10 * 16,
                                                                   5 * 5 * 16, 120, 84, 10]
    assert [row.params for row in chain.rows] == [conv_params(5, 3, 6), 0, conv_params(5, 6, 16), 0,
                                                  fc_params(400, 120), fc_params(120, 84), fc_params(84, 10)]
    assert [row.params for row in chain.rows] == [456, 0, 2416, 0, 48120, 10164, 850]


def test_lecture_alexnet_shapes_through_the_registered_model(drawn_outputs):
    spec = catalog.get("alexnet-lecture")
    assert (spec.input.channels, *spec.input.size) == (3, 227, 227)
    with torch.device("meta"):
        model = spec.build()
    assert drawn_outputs(model, (3, 227, 227), device="meta") == ALEXNET
    assert rows_in_lecture_order(describe(spec.layers, (3, 227, 227))) == ALEXNET


def test_lecture_alexnet_has_about_62m_parameters(shape_calc):
    lecture = (conv_params(11, 3, 96) + conv_params(5, 96, 256) + conv_params(3, 256, 384) + conv_params(3, 384, 384)
               + conv_params(3, 384, 256) + fc_params(9216, 4096) + fc_params(4096, 4096) + fc_params(4096, 1000))
    assert lecture == 62_378_344
    with torch.device("meta"):
        model = catalog.get("alexnet-lecture").build()
    assert sum(p.numel() for p in model.parameters()) == lecture
    assert shape_calc("--model", "alexnet-lecture")["total_params"] == lecture


def test_lecture_vgg16_shapes(drawn_outputs):
    spec = catalog.get("vgg16")
    assert rows_in_lecture_order(describe(spec.layers, (3, 224, 224)), ("conv", "max", "fc")) == VGG16
    with torch.device("meta"):
        model = torchvision.models.vgg16(weights=None)
    assert drawn_outputs(model, (3, 224, 224), device="meta") == VGG16


@pytest.mark.parametrize("build", [lambda: torchvision.models.vgg16(weights=None),
                                   lambda: catalog.get("vgg16").build()], ids=["torchvision", "registered"])
def test_lecture_vgg16_has_about_138m_parameters(shape_calc, build):
    with torch.device("meta"):
        count = sum(p.numel() for p in build().parameters())
    assert round(count / 1e6) == 138
    assert shape_calc("--model", "vgg16")["total_params"] == count
