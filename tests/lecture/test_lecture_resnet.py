"""The lecture's "why ResNets work": a[l+2] = g(W[l+2]·a[l+1] + b[l+2] + a[l]). With W[l+2] = 0 and b[l+2] = 0
the block computes g(a[l]) = ReLU(a[l]) = a[l] for the non-negative a[l] a ReLU network carries: the identity is
easy for a residual block to learn, so extra blocks do not hurt. Checked on the residual block cnntool's own
ResNet uses (the identity block of cnntool.models.resnet's resnet_small: torchvision's BasicBlock, where the
second layer's bias is its batch norm's shift)."""

import torch

from cnntool.models.resnet import resnet_small


def identity_block():
    torch.manual_seed(0)
    model = resnet_small(widths=(8,), blocks=(2,), num_classes=3, in_channels=1).eval()
    block = model.layer1[1]  # the stage's second block: input and output 8 channels, identity shortcut
    assert block.downsample is None
    return block


def zero_second_layer(block) -> None:
    """W[l+2] = 0 and b[l+2] = 0."""
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.bn2.bias.zero_()


def test_lecture_resnet_block_with_zero_weights_gives_back_a_l():
    block = identity_block()
    zero_second_layer(block)
    a_l = torch.relu(torch.randn(2, 8, 6, 6))  # ReLU activations: non-negative
    with torch.no_grad():
        torch.testing.assert_close(block(a_l), a_l, rtol=0, atol=1e-6)


def test_lecture_resnet_identity_needs_non_negative_a_l():
    block = identity_block()
    zero_second_layer(block)
    a_l = -torch.ones(1, 8, 4, 4)
    with torch.no_grad():
        assert torch.equal(block(a_l), torch.zeros_like(a_l))  # g(a[l]) = ReLU(a[l]), which is a[l] only when a[l] ≥ 0


def test_lecture_resnet_block_without_the_zeros_is_not_the_identity():
    block = identity_block()
    a_l = torch.relu(torch.randn(2, 8, 6, 6))
    with torch.no_grad():
        assert not torch.allclose(block(a_l), a_l, atol=1e-3)
