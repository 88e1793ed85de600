"""Image classification: logits → top-k labels with probabilities."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from cnntool.preprocess import Geometry

TASK = "classify"


def decode(logits: "torch.Tensor", geometries: Sequence["Geometry"], *, classes: Sequence[str],
           options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each image's top-k predictions: {"predictions": [{"label", "index", "score"}, …]}, best first."""
    k = min(int(options.get("topk", 5)), logits.shape[1])
    probabilities = logits.float().softmax(dim=1)
    scores, indices = probabilities.topk(k, dim=1)
    out = []
    for row_scores, row_indices in zip(scores.tolist(), indices.tolist()):
        out.append({"predictions": [
            {"label": classes[i] if i < len(classes) else str(i), "index": i, "score": s}
            for s, i in zip(row_scores, row_indices)
        ]})
    return out


def mirror_mean(model: Callable[["torch.Tensor"], "torch.Tensor"], images: "torch.Tensor") -> "torch.Tensor":
    """Test-time augmentation (--tta-flip): logits whose softmax is the mean of the class probabilities of
    the images and of their mirror images."""
    return ((model(images).float().softmax(1) + model(images.flip(3)).float().softmax(1)) / 2).log()


def runner(model: Callable, module: "torch.nn.Module", options: Mapping[str, Any]) -> Callable:
    """How the prediction pipeline calls the classifier: as it is, or with its mirror image under --tta-flip."""
    return partial(mirror_mean, model) if options.get("tta_flip") else model


def draw(image: "Image.Image", fields: Mapping[str, Any]) -> "Image.Image":
    """The top prediction written on a band above the image."""
    from PIL import Image, ImageDraw

    best = fields["predictions"][0]
    text = f"{best['label']} {best['score']:.2f}"
    band = max(14, image.height // 12)
    canvas = Image.new("RGB", (max(image.width, 8 * len(text)), image.height + band), (0, 0, 0))
    canvas.paste(image, (0, band))
    ImageDraw.Draw(canvas).text((2, max(0, band // 2 - 6)), text, fill=(255, 255, 0))
    return canvas
