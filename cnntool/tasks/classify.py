"""Image classification: logits → top-k labels with probabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

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
