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
