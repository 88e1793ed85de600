"""torchvision's detectors in our registry: Faster R-CNN, RetinaNet, SSDlite and FCOS.

Built without weights (the registry's `torchvision:` source loads COCO weights through cnntool.loader
where the user is online, or from the torch hub cache); trainable on user data with the training engine,
whose steps call `model(inputs)` with one argument: in training mode that argument is the pair
(images, targets) — torchvision's detectors take targets then and return their loss dict — and a forward
pre-hook unpacks it, so the state-dict keys stay torchvision's own and published weights load as-is.
In eval mode they return one {"boxes", "scores", "labels"} dict per image in input pixels, the contract
of every detector here. Label 0 is their background class.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models import detection

# Keep low-score boxes: post-processing (--conf) and mAP apply their own thresholds.
_KEEP_ALL = {"box_score_thresh": 0.001, "box_detections_per_img": 300}


def _unpack_pair(module: nn.Module, args: tuple) -> tuple | None:
    (x,) = args
    if isinstance(x, tuple):  # (images, targets) from the detect training task
        images, targets = x
        return list(images), targets
    return (list(x),)


def _trainable(model: nn.Module) -> nn.Module:
    model.register_forward_pre_hook(_unpack_pair)
    return model


def fasterrcnn_mobilenet(*, num_classes: int = 91, **kwargs: Any) -> nn.Module:
    return _trainable(detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, **_KEEP_ALL, **kwargs))


def fasterrcnn_resnet50(*, num_classes: int = 91, **kwargs: Any) -> nn.Module:
    return _trainable(detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, **_KEEP_ALL, **kwargs))


def retinanet_resnet50(*, num_classes: int = 91, **kwargs: Any) -> nn.Module:
    return _trainable(detection.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, score_thresh=0.001, detections_per_img=300,
        **kwargs))


def ssdlite320(*, num_classes: int = 91, **kwargs: Any) -> nn.Module:
    return _trainable(detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=num_classes, score_thresh=0.001, detections_per_img=300,
        **kwargs))


def fcos_resnet50(*, num_classes: int = 91, **kwargs: Any) -> nn.Module:
    return _trainable(detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, score_thresh=0.001, detections_per_img=300,
        **kwargs))


class _Features(nn.Module):
    """A plain conv stack as a torchvision detection backbone: one feature map, `out_channels` wide, named
    "0" as torchvision's backbones name theirs."""

    def __init__(self, body: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body, self.out_channels = body, out_channels

    def forward(self, x):
        return {"0": self.body(x)}


def fasterrcnn_digits(*, num_classes: int = 11, **kwargs: Any) -> nn.Module:
    """Faster R-CNN the size of the lecture's ladder: window-digits' three convolutions (stride 4, 64 channels)
    as the backbone, a region proposal network with 9 anchors a cell (24, 32, 48 px; aspect 3:4, 1, 4:3) in
    place of selective search, RoIAlign to the 4×4 grid window-digits' fc layers read, two fc layers. Trained
    here from scratch on the digit scenes (weights/rcnn-digits.md)."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.rpn import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    from cnntool.models.sliding import WindowClassifier

    backbone = _Features(WindowClassifier().features, 64)
    return _trainable(detection.FasterRCNN(
        backbone, num_classes=None, min_size=96, max_size=96,
        rpn_anchor_generator=AnchorGenerator(((24, 32, 48),), ((0.75, 1.0, 1.33),)),
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100, box_batch_size_per_image=128,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=4, sampling_ratio=2),
        box_head=TwoMLPHead(64 * 4 * 4, 128), box_predictor=FastRCNNPredictor(128, num_classes), **_KEEP_ALL, **kwargs))
