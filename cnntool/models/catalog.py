"""Every registered architecture, one `register` call each, and the lookups every command uses (`get`,
`names`, `specs`, `default`). stdlib only: `cnntool models` and `shape-calc` import this without torch.

`layers` strings are shape-calc's grammar (cnntool.shapecalc.layers) for the registered kwargs; the helpers below
build the long ones. They write `flatten` where the torch forward flattens, so their rows line up with the
torch modules' outputs; tests/test_models.py checks shapes and parameter counts against the torch models.
Other tasks add their models in their own marked sections at the end of this file.
"""

from __future__ import annotations

from dataclasses import replace

from cnntool.registry import InputSpec, ModelSpec, Registry

REGISTRY = Registry()
register, set_default = REGISTRY.register, REGISTRY.set_default
get, names, specs, default = REGISTRY.get, REGISTRY.names, REGISTRY.specs, REGISTRY.default

# --- layer-string helpers -------------------------------------------------------------------------

def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _conv_bn_relu(kernel: int, channels: int, *, stride: int = 1, padding: int = 0) -> str:
    """torchvision's conv (no bias) → batch norm → ReLU."""
    s = f"s{stride}" if stride != 1 else ""
    p = f"p{padding}" if padding else ""
    return f"conv{kernel}{s}{p}b0:{channels} bn relu"


def _basic_block(channels: int, *, stride: int = 1, project: bool = False) -> str:
    """ResNet BasicBlock: two 3×3 convs; a 1×1 conv shortcut where the shape changes; ReLU after the add."""
    s = f"s{stride}" if stride != 1 else ""
    body = f"conv3{s}p1b0:{channels} bn relu conv3p1b0:{channels} bn"
    shortcut = f" | conv1{s}b0:{channels} bn" if project else ""
    return f"res( {body}{shortcut} ) relu"


def _bottleneck(width: int, *, stride: int = 1, project: bool = False) -> str:
    """ResNet Bottleneck (torchvision's v1.5: the stride sits on the 3×3): 1×1 → 3×3 → 1×1 (4·width)."""
    s = f"s{stride}" if stride != 1 else ""
    body = f"conv1b0:{width} bn relu conv3{s}p1b0:{width} bn relu conv1b0:{4 * width} bn"
    shortcut = f" | conv1{s}b0:{4 * width} bn" if project else ""
    return f"res( {body}{shortcut} ) relu"


def _resnet_stages(block: str, widths: tuple[int, ...], blocks: tuple[int, ...], *, stem_width: int) -> str:
    """Stages of residual blocks; each stage after the first halves the size. The first block of a stage
    projects its shortcut when the shape changes, the rest are identity blocks (written as a repeat)."""
    make = _basic_block if block == "basic" else _bottleneck
    expansion = 1 if block == "basic" else 4
    parts, channels_in = [], stem_width
    for i, (width, depth) in enumerate(zip(widths, blocks)):
        stride = 1 if i == 0 else 2
        parts.append(make(width, stride=stride, project=stride != 1 or channels_in != width * expansion))
        if depth > 1:
            parts.append(f"{depth - 1}*( {make(width)} )")
        channels_in = width * expansion
    return " ".join(parts)


def _resnet(block: str, blocks: tuple[int, ...], num_classes: int) -> str:
    return _join(
        "conv7s2p3b0:64 bn relu max3s2p1",
        _resnet_stages(block, (64, 128, 256, 512), blocks, stem_width=64),
        f"gap flatten fc:{num_classes}",
    )


def _vgg(config: tuple, num_classes: int) -> str:
    """torchvision's VGG: config lists conv widths, "M" a 2×2 max-pool; then a 7×7 adaptive pool."""
    features = " ".join("max2" if c == "M" else f"conv3p1:{c} relu" for c in config)
    return f"{features} aap7 flatten fc:4096 relu dropout fc:4096 relu dropout fc:{num_classes}"


def _inception(c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int) -> str:
    """torchvision's Inception module; its "5×5" branch is a 3×3 conv (kept for its pretrained weights)."""
    return (
        f"cat( {_conv_bn_relu(1, c1)}"
        f" | {_conv_bn_relu(1, c3r)} {_conv_bn_relu(3, c3, padding=1)}"
        f" | {_conv_bn_relu(1, c5r)} {_conv_bn_relu(3, c5, padding=1)}"
        f" | max3s1p1c {_conv_bn_relu(1, pool_proj)} )"
    )


def _googlenet(num_classes: int) -> str:
    return _join(
        _conv_bn_relu(7, 64, stride=2, padding=3), "max3s2c",
        _conv_bn_relu(1, 64), _conv_bn_relu(3, 192, padding=1), "max3s2c",
        _inception(64, 96, 128, 16, 32, 32),  # 3a
        _inception(128, 128, 192, 32, 96, 64),  # 3b
        "max3s2c",
        _inception(192, 96, 208, 16, 48, 64),  # 4a
        _inception(160, 112, 224, 24, 64, 64),  # 4b
        _inception(128, 128, 256, 24, 64, 64),  # 4c
        _inception(112, 144, 288, 32, 64, 64),  # 4d
        _inception(256, 160, 320, 32, 128, 128),  # 4e
        "max2s2c",
        _inception(256, 160, 320, 32, 128, 128),  # 5a
        _inception(384, 192, 384, 48, 128, 128),  # 5b
        f"gap flatten dropout0.2 fc:{num_classes}",
    )


def resnet_small_layers(*, widths: tuple[int, ...], blocks: tuple[int, ...], num_classes: int, dropout: float,
                        lcn: bool = False) -> str:
    """The layer string of cnntool.models.resnet:resnet_small for these kwargs (for registering variants)."""
    return _join(
        "lcn9" if lcn else "",
        _conv_bn_relu(3, widths[0], padding=1),
        _resnet_stages("basic", tuple(widths), tuple(blocks), stem_width=widths[0]),
        f"gap flatten dropout{dropout:g} fc:{num_classes}",
    )


def _lenet5(activation: str, pool: str, num_classes: int) -> str:
    a, p = activation, f"{pool}2"
    return f"conv5:6 {a} {p} conv5:16 {a} {p} flatten fc:120 {a} fc:84 {a} fc:{num_classes}"


# --- input specs ----------------------------------------------------------------------------------

IMAGENET = InputSpec(size=(224, 224), channels=3, resize="center-crop")  # InputSpec's defaults: ImageNet mean/std
# White-on-black digits scaled to [-1, 1], the range the tanh units of LeNet-5 were designed around.
DIGITS_32 = InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.5,), resize="stretch")
# Fashion-MNIST's training-set statistics.
FASHION_28 = InputSpec(size=(28, 28), channels=1, mean=(0.2860,), std=(0.3530,), resize="stretch")
DIGIT_CLASSES = tuple("0123456789")
# Fashion-MNIST's label order (as cnntool.data.builtin, which needs numpy and so cannot be imported here).
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

# --- classify: the lecture's classic architectures ------------------------------------------------

register(ModelSpec(
    name="lenet5", task="classify", builder="cnntool.models.lenet:lenet5",
    kwargs={"num_classes": 10, "in_channels": 1, "activation": "tanh", "pool": "avg"},
    input=DIGITS_32, classes=DIGIT_CLASSES, layers=_lenet5("tanh", "avg", 10),
    summary="LeNet-5 (LeCun 1998): conv5-6, avg-pool, conv5-16, avg-pool, fc120, fc84; tanh",
))
register(ModelSpec(
    name="lenet5-relu", task="classify", builder="cnntool.models.lenet:lenet5",
    kwargs={"num_classes": 10, "in_channels": 1, "activation": "relu", "pool": "max"},
    input=DIGITS_32, classes=DIGIT_CLASSES, layers=_lenet5("relu", "max", 10),
    summary="LeNet-5 layout with ReLU and max-pooling",
))
register(ModelSpec(
    name="alexnet", task="classify", builder="cnntool.models.alexnet:alexnet",
    kwargs={"num_classes": 1000}, input=IMAGENET, weights="torchvision:AlexNet_Weights.IMAGENET1K_V1",
    layers=_join(
        "conv11s4p2:64 relu max3s2 conv5p2:192 relu max3s2",
        "conv3p1:384 relu conv3p1:256 relu conv3p1:256 relu max3s2 aap6 flatten",
        "dropout fc:4096 relu dropout fc:4096 relu fc:1000",
    ),
    summary="AlexNet (Krizhevsky 2012), torchvision's single-tower variant",
))
register(ModelSpec(
    name="vgg11", task="classify", builder="cnntool.models.vgg:vgg11",
    kwargs={"num_classes": 1000}, input=IMAGENET, weights="torchvision:VGG11_Weights.IMAGENET1K_V1",
    layers=_vgg((64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"), 1000),
    summary="VGG-11 (Simonyan 2014): 8 conv 3×3 same + 5 max-pool 2×2, 3 fc",
))
register(ModelSpec(
    name="vgg16", task="classify", builder="cnntool.models.vgg:vgg16",
    kwargs={"num_classes": 1000}, input=IMAGENET, weights="torchvision:VGG16_Weights.IMAGENET1K_V1",
    layers=_vgg((64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"), 1000),
    summary="VGG-16 (Simonyan 2014): 13 conv 3×3 same + 5 max-pool 2×2, 3 fc",
))
register(ModelSpec(
    name="resnet18", task="classify", builder="cnntool.models.resnet:resnet18",
    kwargs={"num_classes": 1000}, input=IMAGENET, weights="torchvision:ResNet18_Weights.IMAGENET1K_V1",
    layers=_resnet("basic", (2, 2, 2, 2), 1000),
    summary="ResNet-18 (He 2015): 8 basic residual blocks",
))
register(ModelSpec(
    name="resnet34", task="classify", builder="cnntool.models.resnet:resnet34",
    kwargs={"num_classes": 1000}, input=IMAGENET, weights="torchvision:ResNet34_Weights.IMAGENET1K_V1",
    layers=_resnet("basic", (3, 4, 6, 3), 1000),
    summary="ResNet-34 (He 2015): 16 basic residual blocks",
))
register(ModelSpec(
    name="resnet50", task="classify", builder="cnntool.models.resnet:resnet50",
    kwargs={"num_classes": 1000}, input=IMAGENET, weights="torchvision:ResNet50_Weights.IMAGENET1K_V1",
    layers=_resnet("bottleneck", (3, 4, 6, 3), 1000),
    summary="ResNet-50 (He 2015): 16 bottleneck residual blocks",
))
register(ModelSpec(
    name="googlenet", task="classify", builder="cnntool.models.inception:googlenet",
    # transform_input: torchvision's ImageNet weights expect it (they were trained on [-1, 1] input).
    kwargs={"num_classes": 1000, "transform_input": True}, input=IMAGENET,
    weights="torchvision:GoogLeNet_Weights.IMAGENET1K_V1", layers=_googlenet(1000),
    summary="GoogLeNet / Inception-v1 (Szegedy 2014), no auxiliary classifiers",
))
_RESNET_SMALL = {"widths": (32, 64, 128), "blocks": (2, 2, 2), "num_classes": 10, "dropout": 0.0, "lcn": False}
register(ModelSpec(
    name="resnet-small", task="classify", builder="cnntool.models.resnet:resnet_small",
    kwargs={**_RESNET_SMALL, "in_channels": 1}, input=FASHION_28, classes=FASHION_CLASSES,
    layers=resnet_small_layers(**_RESNET_SMALL),
    summary="Small ResNet for 28×28 grey images: widths 32/64/128, 2 basic blocks per stage (parametric)",
))
# --- end of the classic architectures --------------------------------------------------------------

# --- localize and landmarks: the lecture's y-vector and l-vector ---------------------------------------

# Scenes and document photos, stretched to a square RGB frame (the whole frame is kept, so the y-vector's
# box and the l-vector's points are relative to the full image); 128 for the localizer's second look.
SCENES_64 = InputSpec(size=(64, 64), channels=3, resize="stretch")
SCENES_128 = InputSpec(size=(128, 128), channels=3, resize="stretch")


register(ModelSpec(
    name="localizer-digits", task="localize", builder="cnntool.models.localizer:localizer",
    kwargs={"num_classes": 10, "in_channels": 3, "widths": (24, 48, 96, 192), "input_size": 128, "hidden": 256,
            "dropout": 0.1, "refine": 24, "crop": 32, "context": 1.25, "downsample": 2},
    input=SCENES_128, classes=DIGIT_CLASSES, weights="embedded:localizer-digits",
    summary="Classification with localization (y = [p_c, b_x, b_y, b_h, b_w, c_1..c_10]): handwritten "
            "digits on photos; VGG-style strided convs at half resolution (p_c and class from global "
            "max-pooling, box from fc), then a second look at the box cut out at full resolution; the "
            "embedded file averages the y-vectors of four such nets fine-tuned on different scenes, and a "
            "small ResNet trained on box crops reads the averaged box again for the class",
))
register(ModelSpec(
    name="landmarker-corners", task="landmarks", builder="cnntool.models.landmarker:landmarker",
    kwargs={"num_points": 4, "in_channels": 3, "widths": (24, 48), "dilations": (2, 4, 8, 1)},
    input=SCENES_64, classes=("top_left", "top_right", "bottom_right", "bottom_left"),
    weights="embedded:landmarker-corners",
    summary="Four document corners (l-vector l_1x, l_1y … l_4x, l_4y) of a page or photo print lying on a photo, "
            "trained on generated scenes (`cnntool data documents`): strided + dilated convs, one heatmap "
            "per point, soft-argmax",
))
set_default("localize", "localizer-digits")
set_default("landmarks", "landmarker-corners")

# --- verify-face: Siamese nets, triplet loss and a learned similarity ----------------------------------

# dlib's aligned face chips as raw 0..255 pixel values (mean 0, std 1/255 undoes preprocess's scaling).
FACE_CHIP_150 = InputSpec(size=(150, 150), channels=3, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, resize="stretch")

register(ModelSpec(
    name="dlib-face-resnet", task="verify-face", builder="cnntool.models.embedding:dlib_face_resnet",
    input=FACE_CHIP_150, weights="external:dlib", card="dlib-faces", decode={"detect": True},
    summary="dlib's 128-d ResNet face descriptor (CC0, face-recognition-models) on 5-point aligned 150×150 "
            "chips; same person when the Euclidean distance ≤ 0.6",
))
register(ModelSpec(
    name="embedding-net", task="verify-face", builder="cnntool.models.embedding:embedding_net",
    kwargs={"backbone": "resnet-small", "dim": 64, "in_channels": 1, "similarity_head": False,
            "backbone_kwargs": {"widths": (16, 32, 64), "blocks": (1, 1, 1)}},
    input=FASHION_28,
    summary="Any classify backbone with its last fc replaced by an L2-normalized embedding layer (+ optional "
            "similarity head σ(Σ w_k|f_i−f_j|_k + b)); train with `cnntool train verify-face`",
))
# Fashion-MNIST's 28×28 grey images through LeNet-5's [-1, 1] scaling.
GREY_28 = InputSpec(size=(28, 28), channels=1, mean=(0.5,), std=(0.5,), resize="stretch")
register(ModelSpec(
    name="oneshot-fashion", task="verify-face", builder="cnntool.models.embedding:embedding_net",
    kwargs={"backbone": "lenet5-relu", "dim": 64, "in_channels": 1, "similarity_head": False,
            "backbone_kwargs": {"input_size": (28, 28)}},
    input=GREY_28, weights="embedded:oneshot-fashion",
    summary="One-shot embedding, LeNet-5 (ReLU) backbone: Fashion-MNIST classes 0-6 as training identities, "
            "verified on classes it never saw (7-9) and on OpenCV digits; see weights/README.md",
))
set_default("verify-face", "dlib-face-resnet")

# --- detect: sliding windows, convolutional sliding windows, YOLO and Faster R-CNN -------------------------
# Every detector's module returns, in eval mode, one {"boxes", "scores", "labels"} dict per image in its
# input frame; cnntool.tasks.detect.predict thresholds, NMSes and maps them back for all of them.

# The scenes the embedded detectors were trained on are 96×96; letterbox keeps other photos' aspect.
SCENES_96 = InputSpec(size=(96, 96), channels=3, resize="letterbox")
# torchvision's detectors normalize inside their own transform: they take 0..1 RGB.
UNIT_RGB = dict(channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize="letterbox")

register(ModelSpec(
    name="yolo-digits", task="detect", builder="cnntool.models.yolo:grid_detector",
    kwargs={"num_classes": 10, "widths": (24, 48, 96), "extra_blocks": 1, "anchors": ((28.0, 36.0),)},
    input=SCENES_96, classes=DIGIT_CLASSES, weights="embedded:yolo-digits",
    summary="YOLO-style one-stage grid detector: small ResNet backbone (stride 8), per cell and anchor "
            "objectness, class and box; handwritten digits on photos",
))
register(ModelSpec(
    name="window-digits", task="classify", builder="cnntool.models.sliding:window_classifier",
    kwargs={"num_classes": 11}, input=InputSpec(size=(32, 32), channels=3, resize="stretch"),
    classes=(*DIGIT_CLASSES, "background"), weights="embedded:window-digits",
    layers="conv5:16 relu max2 conv3:32 relu max2 conv3:64 relu flatten fc:128 relu fc:11",
    summary="Sliding-window classifier: closely cropped digits + background windows, 32×32, valid convs "
            "so its fc layers can become convolutions",
))
register(ModelSpec(
    name="sliding-windows-digits", task="detect", builder="cnntool.models.sliding:sliding_windows",
    kwargs={"convolutional": False}, parts={"classifier": "window-digits"}, input=SCENES_96,
    classes=DIGIT_CLASSES,
    summary="Sliding windows: window-digits applied to every 32×32 window (stride 4) of an image pyramid",
))
register(ModelSpec(
    name="conv-sliding-windows-digits", task="detect", builder="cnntool.models.sliding:sliding_windows",
    kwargs={"convolutional": True}, parts={"classifier": "window-digits"}, input=SCENES_96,
    classes=DIGIT_CLASSES,
    summary="Convolutional sliding windows: window-digits with its fc layers as convolutions (weights "
            "reshaped), every window of a pyramid level in one forward pass",
))
for _name, _builder, _enum, _side, _summary in (
    ("fasterrcnn-mobilenet", "fasterrcnn_mobilenet", "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights", 320,
     "Faster R-CNN, MobileNetV3-Large FPN backbone, 320 px (torchvision)"),
    ("fasterrcnn-resnet50", "fasterrcnn_resnet50", "FasterRCNN_ResNet50_FPN_Weights", 640,
     "Faster R-CNN, ResNet-50 FPN backbone (torchvision)"),
    ("retinanet-resnet50", "retinanet_resnet50", "RetinaNet_ResNet50_FPN_Weights", 640,
     "RetinaNet, ResNet-50 FPN backbone, focal loss (torchvision)"),
    ("ssdlite320", "ssdlite320", "SSDLite320_MobileNet_V3_Large_Weights", 320,
     "SSDlite, MobileNetV3-Large backbone, 320 px (torchvision)"),
    ("fcos-resnet50", "fcos_resnet50", "FCOS_ResNet50_FPN_Weights", 640,
     "FCOS, anchor-free, ResNet-50 FPN backbone (torchvision)"),
):
    register(ModelSpec(
        name=_name, task="detect", builder=f"cnntool.models.tv_detection:{_builder}",
        kwargs={"num_classes": 91}, input=InputSpec(size=(_side, _side), **UNIT_RGB),
        weights=f"torchvision:{_enum}.COCO_V1",
        summary=f"{_summary}; COCO weights where online, or train on your data",
    ))

# --- classify: embedded models trained with `cnntool train classify` (recipes in their cards, weights/<name>.md) -------
# Both were trained on light objects on black; their files predate `foreground` in the metadata, so the
# entries say it (a retrained file records it itself: the engine reads it off the data).

register(ModelSpec(
    name="lenet5-digits", task="classify", builder="cnntool.models.lenet:lenet5",
    kwargs={"num_classes": 10, "in_channels": 1, "activation": "relu", "pool": "max"},
    input=replace(DIGITS_32, foreground="light", contrast="stretch"), classes=DIGIT_CLASSES,
    layers=_lenet5("relu", "max", 10), weights="embedded:lenet5-digits.safetensors",
    summary="LeNet-5 (ReLU, max-pool) trained on OpenCV's 5,000 handwritten digits and 4,999 more MNIST "
            "digits (white on black; dark-on-light images, print on grey paper too, are inverted); the embedded "
            "file averages five trained on one split and carries a domain check: no answer for what is not a digit",
))
register(ModelSpec(
    name="fashion-resnet-small", task="classify", builder="cnntool.models.resnet:resnet_small",
    kwargs={"widths": (48, 96, 192), "blocks": (2, 2, 2), "num_classes": 10, "in_channels": 1, "dropout": 0.0},
    input=replace(FASHION_28, foreground="light"), classes=FASHION_CLASSES,
    weights="embedded:fashion-resnet-small.safetensors",
    layers=resnet_small_layers(widths=(48, 96, 192), blocks=(2, 2, 2), num_classes=10, dropout=0.0),
    summary="Small ResNet (widths 48/96/192, two basic blocks per stage) trained on Fashion-MNIST",
))
set_default("classify", "lenet5-digits")

# --- faces: dlib's CC0 models (face-recognition-models), run without dlib --------------------------------
# The detector runs its own pyramid over the full-resolution photo: images keep their size, as raw
# 0..255 RGB (mean 0, std 1/255 undoes preprocess's scaling).
FULL_RES_RGB = InputSpec(size=(0, 0), channels=3, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, resize="none")
_FACE68_NAMES = tuple(
    f"{part}_{i}" for part, count in (("jaw", 17), ("right_eyebrow", 5), ("left_eyebrow", 5), ("nose_bridge", 4),
                                      ("nose_lower", 5), ("right_eye", 6), ("left_eye", 6), ("outer_lip", 12),
                                      ("inner_lip", 8))
    for i in range(1, count + 1)
)
_FACE5_NAMES = ("right_eye_outer", "right_eye_inner", "left_eye_outer", "left_eye_inner", "nose_base")

register(ModelSpec(
    name="faces", task="detect", builder="cnntool.models.faces:face_detector", input=FULL_RES_RGB,
    classes=("face",), weights="external:dlib", decode={"conf": 0.0}, card="dlib-faces",
    summary="dlib's MMOD CNN face detector (CC0): faces down to ~40 px on images up to 2 MP (upsampled once), "
            "~80 px above (--upsample N fixes it); "
            "scores are dlib's detection confidences (kept from 0 up)",
))
register(ModelSpec(
    name="face5", task="landmarks", builder="cnntool.models.faces:face_landmarks", kwargs={"kind": "5"},
    input=FULL_RES_RGB, classes=_FACE5_NAMES, weights="external:dlib", card="dlib-faces",
    summary="dlib's 5-point face landmarks (eye corners, nose base) on every face the detector finds (CC0)",
))
register(ModelSpec(
    name="face68", task="landmarks", builder="cnntool.models.faces:face_landmarks", kwargs={"kind": "68"},
    input=FULL_RES_RGB, classes=_FACE68_NAMES, weights="external:dlib", card="dlib-faces",
    summary="dlib's 68-point face landmarks (iBUG 300-W layout). NON-COMMERCIAL: trained on iBUG 300-W, "
            "whose terms exclude commercial use",
))
set_default("detect", "faces")

# --- classify: AlexNet as the lecture draws it --------------------------------------------------------------
register(ModelSpec(
    name="alexnet-lecture", task="classify", builder="cnntool.models.alexnet_lecture:alexnet_lecture",
    kwargs={"num_classes": 1000}, input=InputSpec(size=(227, 227), channels=3, resize="center-crop"),
    layers=_join(
        "conv11s4:96 relu max3s2 conv5psame:256 relu max3s2",
        "conv3psame:384 relu conv3psame:384 relu conv3psame:256 relu max3s2 flatten",
        "dropout fc:4096 relu dropout fc:4096 relu fc:1000",
    ),
    summary="AlexNet as the lecture draws it: 227×227×3, conv 96 11×11/4, max 3/2, conv 256 5×5 same, max 3/2, "
            "conv 384, 384, 256 3×3 same, max 3/2, fc 4096, 4096, 1000 (62 M parameters); no weights, train it",
))

# --- detect: R-CNN and Fast R-CNN around the sliding-window classifier ------------------------------------
# Both score the same selective-search proposals (cnntool.models.proposals) with window-digits: R-CNN each
# proposal's crop alone, Fast R-CNN RoI-pooled from one convolutional pass. Proposals are found on the pixels,
# so the detectors undo their input's normalization.
for _name, _builder, _summary in (
    ("rcnn-digits", "rcnn", "R-CNN: selective-search proposals, each crop warped to 32×32 and classified alone by "
                            "window-digits (one forward per proposal)"),
    ("fast-rcnn-digits", "fast_rcnn", "Fast R-CNN: window-digits' convolutions once over the image, the same "
                                      "proposals RoIAlign-pooled to 4×4, its own fc layers (weights not retrained)"),
):
    register(ModelSpec(
        name=_name, task="detect", builder=f"cnntool.models.rcnn:{_builder}",
        kwargs={"pixel_mean": SCENES_96.mean, "pixel_std": SCENES_96.std}, parts={"classifier": "window-digits"},
        input=SCENES_96, classes=DIGIT_CLASSES, card="rcnn-digits", summary=_summary,
    ))
register(ModelSpec(
    name="faster-rcnn-digits", task="detect", builder="cnntool.models.tv_detection:fasterrcnn_digits",
    kwargs={"num_classes": 11}, input=InputSpec(size=(96, 96), **UNIT_RGB),
    classes=("__background__", *DIGIT_CLASSES), weights="embedded:faster-rcnn-digits", card="rcnn-digits",
    summary="Faster R-CNN on window-digits' convolutions: a region proposal network instead of selective search, "
            "RoIAlign, two fc layers; trained here on the ladder's digit scenes",
))
