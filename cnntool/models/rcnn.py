"""R-CNN and Fast R-CNN as the lecture tells them, around ONE trained window classifier (window-digits,
cnntool.models.sliding) and ONE set of region proposals (selective search, cnntool.models.proposals).

  R-CNN       every proposal's crop is resampled to 32×32 and classified alone: one network evaluation per
              proposal. The crop is the one the classifier was trained on (cnntool.data.crops): a square of
              CONTEXT × the proposal's longer side around it, RoIAlign-resampled, black outside the image.
  Fast R-CNN  the classifier's convolutional features (`features`, total stride 4) are computed ONCE over the
              whole image; each proposal's crop is mapped onto that feature map and RoI-pooled to the 4×4
              grid fc1 reads, then the classifier's own fc1 and fc2 (the same weights, not retrained) score
              it. A 32×32 crop at a multiple of the stride gets exactly the features the classifier computes
              for that crop alone: the convolutions are valid, so the shared pass holds every such crop's.

Both return, like every detector of the registry, one {"boxes", "scores", "labels", "class_scores"} dict per
image in input pixels: the proposal, the best non-background class and its probability, and every class's
probability (background left out). Neither regresses boxes: a detection is as tight as its proposal.

The proposals are computed on the pixels: the input is normalized (mean/std of the registered input spec),
so the detectors undo that first. window-digits reads the same normalization.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from cnntool.models.proposals import require_skimage, selective_search
from cnntool.models.sliding import STRIDE, WINDOW, WindowClassifier
from cnntool.models.yvector import BACKGROUND, CONTEXT

# A cell of window-digits' last feature map sees 20×20 pixels (conv5 adds 4, pool2 1, conv3 2·2, pool2 1·2,
# conv3 2·4 to one pixel) starting at 4 × its index: the 4×4 cells of a 32×32 window see exactly the window.
RECEPTIVE_FIELD = 20
POOLED = 4  # the feature grid fc1 reads for a 32×32 window


def context_squares(rois: Tensor, context: float = CONTEXT) -> Tensor:
    """RoI rows [image index, x1, y1, x2, y2] → the same rows for the square of side `context` × the box's
    longer side centred on the box: the crop the window classifier was trained on."""
    index, x1, y1, x2, y2 = rois.unbind(1)
    half = torch.maximum(x2 - x1, y2 - y1) * context / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return torch.stack([index, cx - half, cy - half, cx + half, cy + half], 1)


class ProposalDetector(nn.Module):
    """What R-CNN and Fast R-CNN share: the proposals, and their class probabilities → detections. Subclasses
    give `region_logits`, the classifier's logits for each proposal."""

    def __init__(self, classifier: WindowClassifier, *, background: int, pixel_mean: Sequence[float],
                 pixel_std: Sequence[float], chunk: int = 1024) -> None:
        super().__init__()
        self.classifier = classifier
        self.background = background
        self.chunk = chunk  # proposals per step: memory stays bounded however many images a batch holds
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def pixels(self, x: Tensor) -> Tensor:
        """The normalized input back to 0..1 pixels."""
        return (x.float() * self.pixel_std + self.pixel_mean).clamp(0, 1)

    def propose(self, x: Tensor) -> list[Tensor]:
        """Each image's proposals, (n, 4) boxes in input pixels (selective search on its pixels)."""
        images = self.pixels(x).permute(0, 2, 3, 1).detach().cpu().double().numpy()
        return [torch.from_numpy(selective_search(image)).float().to(x.device) for image in images]

    def region_logits(self, x: Tensor, rois: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, x: Tensor, proposals: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections for given proposals: the classifier's stage alone."""
        rois = torch.cat([F.pad(boxes, (1, 0), value=i) for i, boxes in enumerate(proposals)])
        probs = self.region_logits(x, rois).float().softmax(1)
        class_scores = torch.cat([probs[:, :self.background], probs[:, self.background + 1:]], 1)
        scores, labels = class_scores.max(1)
        out, start = [], 0
        for boxes in proposals:
            part = slice(start, start + len(boxes))
            out.append({"boxes": boxes, "scores": scores[part], "labels": labels[part],
                        "class_scores": class_scores[part]})
            start += len(boxes)
        return out

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        return self.score(x, self.propose(x))


class RCNN(ProposalDetector):
    """Each proposal's crop warped to 32×32 and classified by itself (a chunk of crops per forward: faster,
    and each crop is still its own network evaluation)."""

    def warped_crops(self, pixels: Tensor, rois: Tensor) -> Tensor:
        """(n, C, 32, 32) normalized crops, cut from the pixels as the classifier's training crops were."""
        crops = roi_align(pixels, context_squares(rois), WINDOW, sampling_ratio=2, aligned=True)
        return (crops - self.pixel_mean) / self.pixel_std

    def region_logits(self, x: Tensor, rois: Tensor) -> Tensor:
        pixels = self.pixels(x)
        return torch.cat([self.classifier(self.warped_crops(pixels, part).to(x.dtype))
                          for part in rois.split(self.chunk)])


class FastRCNN(ProposalDetector):
    """One pass of the classifier's convolutions over the image; RoIAlign of each crop to 4×4; fc1, fc2."""

    def feature_boxes(self, rois: Tensor) -> Tensor:
        """Each proposal's crop as a box on the feature map, in pixel units for RoIAlign (spatial scale 1/4,
        aligned: cell i spans pixels [4i, 4i + 4)). The cells a crop [x1, x2) holds whole are x1/4 …
        (x2 − 20)/4, which span [x1, x2 − 16) in those units; a 32×32 crop at x1 = 4i pools cells i … i + 3,
        one per bin, exactly the classifier's own grid. Crops are rounded to whole pixels: float error would
        make a crop of exactly 4 cells span 4.000001, and RoIAlign then take 2 samples per bin, not 1."""
        squares = context_squares(rois).round()
        squares[:, 3:] -= RECEPTIVE_FIELD - STRIDE
        return squares

    def pooled_features(self, features: Tensor, rois: Tensor) -> Tensor:
        """(n, 64, 4, 4): each proposal's RoIAlign-pooled slice of its image's feature map."""
        # sampling_ratio 0: as many samples per bin as the bin spans cells, averaged, as warping averages
        # pixels; a bin of one cell reads that cell alone.
        return roi_align(features, self.feature_boxes(rois).to(features.dtype), POOLED, spatial_scale=1 / STRIDE,
                         sampling_ratio=0, aligned=True)

    def head(self, pooled: Tensor) -> Tensor:
        """The classifier's own fc1 and fc2."""
        return self.classifier.fc2(F.relu(self.classifier.fc1(pooled.flatten(1))))

    def region_logits(self, x: Tensor, rois: Tensor) -> Tensor:
        features = self.classifier.features(x)  # ONE pass over every image
        return torch.cat([self.head(self.pooled_features(features, part)) for part in rois.split(self.chunk)])


def _parts(classifier: tuple[nn.Module, Sequence[str]]) -> tuple[nn.Module, int]:
    """The window classifier (module, class names) from the loader, and where its background class is."""
    require_skimage()
    module, classes = classifier
    if BACKGROUND not in classes:
        raise ValueError(f"a window classifier needs a {BACKGROUND!r} class")
    return module, list(classes).index(BACKGROUND)


def rcnn(*, classifier: tuple[nn.Module, Sequence[str]], pixel_mean: Sequence[float],
         pixel_std: Sequence[float]) -> RCNN:
    module, background = _parts(classifier)
    return RCNN(module, background=background, pixel_mean=pixel_mean, pixel_std=pixel_std)


def fast_rcnn(*, classifier: tuple[nn.Module, Sequence[str]], pixel_mean: Sequence[float],
              pixel_std: Sequence[float]) -> FastRCNN:
    module, background = _parts(classifier)
    return FastRCNN(module, background=background, pixel_mean=pixel_mean, pixel_std=pixel_std)
