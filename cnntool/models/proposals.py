"""Selective search (Uijlings et al., 2013): R-CNN's region proposals, from a bottom-up grouping of an image
segmentation.

Felzenszwalb and Huttenlocher's graph segmentation (scikit-image) gives the initial regions. Neighbouring
regions are then merged greedily, the most similar pair first, until one region is left, and every region
ever formed is a proposal (its box). The similarity of two regions is a sum of up to four terms in [0, 1]:

  colour   intersection of their colour histograms (25 bins per channel);
  texture  intersection of their texture histograms (Gaussian derivatives, σ 1, in 8 orientations, 10 bins
           each, per channel);
  size     1 − (size a + size b) / image size: small regions merge first, so the hierarchy grows evenly
           everywhere instead of one region swallowing its neighbours;
  fill     1 − (their joint box − size a − size b) / image size: regions that fill each other's holes merge
           first, regions far apart last.

One hierarchy finds what one way of grouping finds, so several are run (diversification): each colour space
(its own segmentation and histograms) × segmentation scale × similarity mix. The boxes of all are ranked as
the paper does: a region's position in its hierarchy (1 the last merge, the whole image; larger ones for
earlier, smaller regions) times a random number in (0, 1], so every hierarchy's large regions come first
without one hierarchy crowding out the others; a box found twice is kept once, at its better rank.

Needs scikit-image, an optional dependency (`pip install scikit-image`).
"""

from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np

from cnntool.errors import ConfigError

COLOUR_SPACES = ("rgb", "hsv", "lab")
# Similarity mixes: which of colour (c), texture (t), size (s) and fill (f) a hierarchy sums.
MIXES = ("cstf", "tsf", "sf")
_COLOUR_BINS = 25
_TEXTURE_BINS = 10
_ORIENTATIONS = 8


def require_skimage() -> None:
    """A one-line error naming the install command when scikit-image is missing."""
    try:
        import skimage.segmentation  # noqa: F401  (only whether it imports)
    except ImportError:
        raise ConfigError("selective search needs scikit-image: pip install scikit-image") from None


def selective_search(image: np.ndarray, *, colour_spaces: Sequence[str] = ("hsv", "lab"),
                     scales: Sequence[float] = (50, 100, 200), mixes: Sequence[str] = ("cstf", "tsf"),
                     sigma: float = 0.8, min_region: int = 10, min_side: float = 16,
                     max_proposals: int = 2000, seed: int = 0) -> np.ndarray:
    """Proposals for an RGB image (H, W, 3) of floats in [0, 1]: (n, 4) boxes [x1, y1, x2, y2] in pixels (pixel i
    covering [i, i + 1)), best ranked first, at most `max_proposals`, none with a longer side under `min_side`."""
    from skimage.segmentation import felzenszwalb

    rng = np.random.default_rng(seed)
    boxes, ranks = [], []
    for space in colour_spaces:
        converted = to_colour_space(image, space)
        colour, texture = colour_features(converted), texture_features(converted)
        for scale in scales:
            labels = felzenszwalb(converted, scale=scale, sigma=sigma, min_size=min_region)
            for mix in mixes:
                found = hierarchy(labels, colour, texture, mix)
                boxes.append(found)
                ranks.append(np.arange(len(found), 0, -1) * rng.uniform(1e-9, 1.0, len(found)))
    return ranked_unique(np.concatenate(boxes), np.concatenate(ranks), min_side=min_side, limit=max_proposals)


def to_colour_space(image: np.ndarray, space: str) -> np.ndarray:
    """The image in `space`, every channel scaled to [0, 1]."""
    from skimage import color

    if space == "rgb":
        return image
    if space == "hsv":
        return color.rgb2hsv(image)
    if space == "lab":
        lab = color.rgb2lab(image)
        return np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255, (lab[..., 2] + 128) / 255], axis=-1)
    raise ValueError(f"colour space must be one of {', '.join(COLOUR_SPACES)}, not {space!r}")


def colour_features(image: np.ndarray) -> np.ndarray:
    """Each pixel's colour bin per channel: (H·W, C) indices into _COLOUR_BINS."""
    return np.clip((image * _COLOUR_BINS).astype(int), 0, _COLOUR_BINS - 1).reshape(-1, image.shape[-1])


def texture_features(image: np.ndarray) -> np.ndarray:
    """Each pixel's texture bin per channel and orientation: (H·W, C·8) indices into _TEXTURE_BINS. The
    response in an orientation is the Gaussian derivative along it, rectified (the opposite orientation
    takes the negative part) and scaled by its largest value in the image."""
    from scipy.ndimage import gaussian_filter

    columns = []
    for channel in np.moveaxis(image, -1, 0):
        dy, dx = gaussian_filter(channel, 1.0, order=(1, 0)), gaussian_filter(channel, 1.0, order=(0, 1))
        for angle in np.arange(_ORIENTATIONS) * 2 * np.pi / _ORIENTATIONS:
            response = np.maximum(np.cos(angle) * dx + np.sin(angle) * dy, 0).ravel()
            top = response.max()
            columns.append(response / top if top > 0 else response)
    return np.clip((np.stack(columns, 1) * _TEXTURE_BINS).astype(int), 0, _TEXTURE_BINS - 1)


def histograms(labels: np.ndarray, bins: np.ndarray, count: int, regions: int) -> np.ndarray:
    """(regions, columns·count) histograms of per-pixel bin indices (H·W, columns) over each region, summing to 1."""
    columns = bins.shape[1]
    index = (labels[:, None] * columns + np.arange(columns)) * count + bins
    totals = np.bincount(index.ravel(), minlength=regions * columns * count).reshape(regions, columns * count)
    return totals / totals.sum(1, keepdims=True)


def region_boxes(labels: np.ndarray) -> np.ndarray:
    """Each label's tight box [x1, y1, x2, y2] in pixels."""
    from scipy.ndimage import find_objects

    return np.array([[cols.start, rows.start, cols.stop, rows.stop] for rows, cols in find_objects(labels + 1)],
                    dtype=float)


def neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """(n, 2) label pairs a < b that touch (4-connected)."""
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    differ = a != b
    low, high = np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])
    keys = np.unique(low * (int(labels.max()) + 1) + high)  # one integer per pair: a fast unique
    return np.stack(divmod(keys, int(labels.max()) + 1), 1)


class _Regions:
    """The regions of one hierarchy: initial ones first, each merge appended; sizes, boxes and histograms."""

    def __init__(self, labels: np.ndarray, colour: np.ndarray, texture: np.ndarray, mix: str) -> None:
        count = int(labels.max()) + 1
        flat = labels.ravel()
        capacity = 2 * count - 1  # every merge adds one region, and count − 1 merges leave one
        self.image_size = labels.size
        self.mix = mix
        self.sizes = np.zeros(capacity)
        self.sizes[:count] = np.bincount(flat, minlength=count)
        self.boxes = np.zeros((capacity, 4))
        self.boxes[:count] = region_boxes(labels)
        self.colour = np.zeros((capacity, colour.shape[1] * _COLOUR_BINS))
        self.colour[:count] = histograms(flat, colour, _COLOUR_BINS, count)
        self.texture = np.zeros((capacity, texture.shape[1] * _TEXTURE_BINS))
        self.texture[:count] = histograms(flat, texture, _TEXTURE_BINS, count)
        self.count = count

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The mix's similarity of regions a[i] and b[i], for index arrays a and b."""
        total = np.zeros(len(a))
        if "c" in self.mix:
            total += np.minimum(self.colour[a], self.colour[b]).sum(1)
        if "t" in self.mix:
            total += np.minimum(self.texture[a], self.texture[b]).sum(1)
        if "s" in self.mix:
            total += 1 - (self.sizes[a] + self.sizes[b]) / self.image_size
        if "f" in self.mix:
            joint = np.concatenate([np.minimum(self.boxes[a, :2], self.boxes[b, :2]),
                                    np.maximum(self.boxes[a, 2:], self.boxes[b, 2:])], 1)
            area = (joint[:, 2] - joint[:, 0]) * (joint[:, 3] - joint[:, 1])
            total += 1 - (area - self.sizes[a] - self.sizes[b]) / self.image_size
        return total

    def merge(self, a: int, b: int) -> int:
        """A new region, the union of a and b; its histograms the size-weighted mean of theirs."""
        new, weights = self.count, self.sizes[[a, b]]
        self.sizes[new] = weights.sum()
        self.boxes[new, :2] = np.minimum(self.boxes[a, :2], self.boxes[b, :2])
        self.boxes[new, 2:] = np.maximum(self.boxes[a, 2:], self.boxes[b, 2:])
        for table in (self.colour, self.texture):
            table[new] = (weights[0] * table[a] + weights[1] * table[b]) / weights.sum()
        self.count += 1
        return new


def hierarchy(labels: np.ndarray, colour: np.ndarray, texture: np.ndarray, mix: str) -> np.ndarray:
    """The boxes of every region of one grouping hierarchy, initial regions first, in merge order."""
    if set(mix) - set("ctsf") or not mix:
        raise ValueError(f"a similarity mix is letters of 'ctsf', not {mix!r}")
    regions = _Regions(labels, colour, texture, mix)
    neighbours: dict[int, set[int]] = {i: set() for i in range(regions.count)}
    pairs = neighbour_pairs(labels)
    for a, b in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    # A max-heap of pair similarities; pairs of a region merged away are stale and skipped when popped.
    queue = [(-s, a, b) for s, a, b in zip(regions.similarity(pairs[:, 0], pairs[:, 1]), *pairs.T.tolist())]
    heapq.heapify(queue)
    while queue:
        _, a, b = heapq.heappop(queue)
        if a not in neighbours or b not in neighbours:
            continue
        new = regions.merge(a, b)
        around = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        for other in around:
            neighbours[other] -= {a, b}
            neighbours[other].add(new)
        neighbours[new] = around
        if around:
            others = np.fromiter(around, int)
            for s, other in zip(regions.similarity(np.full(len(others), new), others), others.tolist()):
                heapq.heappush(queue, (-s, other, new))
    return regions.boxes[:regions.count].copy()


def ranked_unique(boxes: np.ndarray, ranks: np.ndarray, *, min_side: float, limit: int) -> np.ndarray:
    """Boxes by ascending rank, each distinct box once (at its best rank), small ones dropped, at most `limit`."""
    keep = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= min_side
    boxes, ranks = boxes[keep], ranks[keep]
    order = np.argsort(ranks, kind="stable")
    _, first = np.unique(boxes[order], axis=0, return_index=True)
    return boxes[order[np.sort(first)]][:limit]
