"""Image classification at prediction time: logits → the top-k labels with probabilities."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from cnntool.options import option

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from cnntool.preprocess import Geometry


@dataclass
class ClassifyOptions:
    topk: int = option(5, "--topk", "-k", min=1, help="How many labels to report per image.")
    tta_flip: bool = option(False, "--tta-flip", help="Test-time augmentation: average with the mirror image (for "
                            "classes a mirror does not change, e.g. clothes; not digits).")


@dataclass
class Prediction:
    label: str
    index: int
    score: float


CSV_COLUMNS = ("rank", "label", "index", "score", "in_domain", "domain_score")


@dataclass
class TopK:
    """The best classes of one image, best first; with a domain check (cnntool.models.domain), whether the
    image is like the model's training images: if not, `label` (the answer) is None and the scores stay."""

    predictions: list[Prediction]
    in_domain: bool | None = None  # None: the model has no domain check
    domain_score: float | None = None  # the check's probability that the image is in the model's domain

    @property
    def label(self) -> str | None:
        return self.predictions[0].label if self.in_domain is not False else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label}
        if self.in_domain is not None:
            out.update(in_domain=self.in_domain, domain_score=self.domain_score)
        return {**out, "predictions": [asdict(p) for p in self.predictions]}

    def summary(self) -> str:
        scores = ", ".join(f"{p.label} {p.score:.3f}" for p in self.predictions)
        if self.in_domain is False:
            return f"not like its training images (domain {self.domain_score:.2f}); scores: {scores}"
        return scores

    def csv_rows(self) -> list[dict[str, Any]]:
        return [{"rank": rank, **asdict(p), "in_domain": self.in_domain, "domain_score": self.domain_score}
                for rank, p in enumerate(self.predictions, 1)]


def decode(outputs: Any, geometries: Sequence["Geometry"], *, classes: Sequence[str],
           options: Mapping[str, Any]) -> list[TopK]:
    """Logits, or (logits, domain logits) from a model with a domain check (the prediction pipeline pairs them)."""
    logits, domain = outputs if isinstance(outputs, tuple) else (outputs, None)
    k = min(int(options.get("topk", 5)), logits.shape[1])
    scores, indices = logits.float().softmax(dim=1).topk(k, dim=1)
    out = [TopK([Prediction(classes[i] if i < len(classes) else str(i), i, s) for s, i in zip(row_s, row_i)])
           for row_s, row_i in zip(scores.tolist(), indices.tolist())]
    if domain is not None:
        from cnntool.models.domain import verdicts

        for topk, (inside, score) in zip(out, verdicts(domain, options.get("domain_threshold", 0.0))):
            topk.in_domain, topk.domain_score = inside, score
    return out


def mirror_mean(model: Callable[["torch.Tensor"], "torch.Tensor"], images: "torch.Tensor") -> "torch.Tensor":
    """Test-time augmentation (--tta-flip): logits whose softmax is the mean of the class probabilities of
    the images and of their mirror images."""
    return ((model(images).float().softmax(1) + model(images.flip(3)).float().softmax(1)) / 2).log()


def runner(model: Callable, module: "torch.nn.Module", options: Mapping[str, Any]) -> Callable:
    return partial(mirror_mean, model) if options.get("tta_flip") else model


def draw(image: "Image.Image", payload: TopK) -> "Image.Image":
    """The top prediction written on a band above the image."""
    from PIL import Image, ImageDraw

    best = payload.predictions[0]
    text = f"{best.label} {best.score:.2f}"
    band = max(14, image.height // 12)
    canvas = Image.new("RGB", (max(image.width, 8 * len(text)), image.height + band), (0, 0, 0))
    canvas.paste(image, (0, band))
    ImageDraw.Draw(canvas).text((2, max(0, band // 2 - 6)), text, fill=(255, 255, 0))
    return canvas


OPTIONS = ClassifyOptions
