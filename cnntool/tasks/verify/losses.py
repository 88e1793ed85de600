"""Verification's three training objectives (the lecture's), with online mining over P×K batches.

- Triplet: max(‖f(A)−f(P)‖² − ‖f(A)−f(N)‖² + α, 0), triplets mined inside the batch:
  batch-all (every valid triplet, averaged over the active ones), batch-hard (per anchor its farthest
  positive and nearest negative), semi-hard (per anchor-positive pair the nearest negative that is still
  farther than the positive: d_ap < d_an < d_ap + α; FaceNet's choice).
- Contrastive (Siamese pairs, Hadsell et al. 2006): y·d² + (1−y)·max(m − d, 0)² over every pair.
- Similarity head: binary cross-entropy of ŷ = σ(Σ_k w_k |f(x_i)_k − f(x_j)_k| + b) over every pair.
Pair losses weigh same and different pairs equally (a P×K batch has far more different pairs).
Also the pair scores every metric gives, as distances (lower = more alike) so one threshold rule serves all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor, nn

OBJECTIVES = ("triplet", "contrastive", "similarity")
MINING = ("batch-hard", "batch-all", "semi-hard")
METRICS = ("euclidean", "cosine", "learned")


def squared_distances(emb: "Tensor") -> "Tensor":
    """(N, N) ‖f_i − f_j‖², exact zeros on the diagonal."""
    diff = emb[:, None, :] - emb[None, :, :]
    return diff.pow(2).sum(-1)


def _masks(labels: "Tensor") -> tuple["Tensor", "Tensor"]:
    import torch

    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same  # positives (not itself), negatives


def mine_triplets(emb: "Tensor", labels: "Tensor", margin: float, mining: str) -> tuple["Tensor", "Tensor", "Tensor"]:
    """Anchor, positive and negative indices of the triplets the strategy trains on."""
    import torch

    if mining not in MINING:
        raise ValueError(f"mining must be one of {', '.join(MINING)}, not {mining!r}")
    with torch.no_grad():
        d = squared_distances(emb.detach().float())
        pos, neg = _masks(labels)
        if mining == "batch-all":
            valid = pos[:, :, None] & neg[:, None, :]
            a, p, n = valid.nonzero(as_tuple=True)
            return a, p, n
        if mining == "batch-hard":
            anchors = (pos.any(1) & neg.any(1)).nonzero(as_tuple=True)[0]
            far_pos = d.masked_fill(~pos, -1.0).argmax(1)
            near_neg = d.masked_fill(~neg, float("inf")).argmin(1)
            return anchors, far_pos[anchors], near_neg[anchors]
        a, p = (pos & neg.any(1, keepdim=True)).nonzero(as_tuple=True)
        d_ap, d_an = d[a, p][:, None], d[a]  # (T, 1), (T, N)
        semi = neg[a] & (d_an > d_ap) & (d_an < d_ap + margin)
        nearest_semi = d_an.masked_fill(~semi, float("inf")).argmin(1)
        # No semi-hard negative: take the farthest negative (the mildest one), as TensorFlow Addons does.
        farthest = d_an.masked_fill(~neg[a], -1.0).argmax(1)
        return a, p, torch.where(semi.any(1), nearest_semi, farthest)


def triplet_loss(emb: "Tensor", labels: "Tensor", margin: float = 0.2, mining: str = "batch-hard") -> "Tensor":
    # Indexing the (N, N) distance matrix, not the embeddings.
    d = squared_distances(emb)
    if mining == "batch-all":
        return _batch_all(d, labels, margin)
    a, p, n = mine_triplets(emb, labels, margin, mining)
    if len(a) == 0:
        return emb.sum() * 0.0  # no valid triplet in this batch: a zero that still has a graph
    return (d[a, p] - d[a, n] + margin).clamp(min=0).mean()


def _batch_all(d: "Tensor", labels: "Tensor", margin: float, chunk: int = 64) -> "Tensor":
    """Every valid triplet, averaged over the active ones (averaging over all would drown the few
    informative ones); dense over anchor chunks, as there are ~N³ triplets (500 images: 10⁸)."""
    pos, neg = _masks(labels)
    total, active = d.sum() * 0.0, 0
    for s in range(0, len(d), chunk):
        valid = pos[s:s + chunk, :, None] & neg[s:s + chunk, None, :]
        losses = (d[s:s + chunk, :, None] - d[s:s + chunk, None, :] + margin).clamp(min=0) * valid
        total = total + losses.sum()
        active += int((losses > 1e-12).sum())
    return total / max(active, 1)


def _balanced(per_pair: "Tensor", same: "Tensor", upper: "Tensor") -> "Tensor":
    """Mean over same pairs and mean over different pairs (i < j), averaged."""
    parts = [per_pair[m].mean() for m in (same & upper, ~same & upper) if bool(m.any())]
    return sum(parts) / len(parts)


def _pairs(labels: "Tensor") -> tuple["Tensor", "Tensor"]:
    import torch

    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(1)
    return same, upper


def contrastive_loss(emb: "Tensor", labels: "Tensor", margin: float = 1.0) -> "Tensor":
    same, upper = _pairs(labels)
    d = (squared_distances(emb) + 1e-12).sqrt()  # the epsilon keeps sqrt's gradient finite at 0
    per_pair = (d.pow(2)).where(same, (margin - d).clamp(min=0).pow(2))
    return _balanced(per_pair, same, upper)


def similarity_logits(head: "nn.Module", emb: "Tensor") -> "Tensor":
    """(N, N) logits of the similarity head for every pair of the batch."""
    n = len(emb)
    a = emb[:, None, :].expand(n, n, -1)
    b = emb[None, :, :].expand(n, n, -1)
    return head(a, b)


def similarity_loss(head: "nn.Module", emb: "Tensor", labels: "Tensor") -> "Tensor":
    from torch.nn import functional as F

    same, upper = _pairs(labels)
    per_pair = F.binary_cross_entropy_with_logits(similarity_logits(head, emb), same.float(), reduction="none")
    return _balanced(per_pair, same, upper)


def pair_distances(a: "Tensor", b: "Tensor", metric: str, head: "nn.Module | None" = None) -> "Tensor":
    """Row-wise distances between embeddings a[i] and b[i]: Euclidean ‖a−b‖, cosine 1 − cos(a, b), or
    learned 1 − ŷ (the similarity head's probability of "same")."""
    import torch
    from torch.nn import functional as F

    a, b = a.float(), b.float()
    if metric == "euclidean":
        return (a - b).pow(2).sum(-1).sqrt()
    if metric == "cosine":
        return 1.0 - F.cosine_similarity(a, b, dim=-1)
    if metric == "learned":
        if head is None:
            raise ValueError("metric 'learned' needs a model trained with the similarity head (--objective similarity)")
        return 1.0 - torch.sigmoid(head(a, b).float())
    raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")


def all_pair_distances(emb: "Tensor", metric: str, head: "nn.Module | None" = None, chunk: int = 256) -> "Tensor":
    """(N, N) distances of every pair under `metric`, without an (N, N, D) intermediate for the fixed
    metrics and in row chunks for the learned one."""
    import torch
    from torch.nn import functional as F

    emb = emb.float()
    if metric == "euclidean":
        return torch.cdist(emb, emb)
    if metric == "cosine":
        unit = F.normalize(emb, dim=1)
        return 1.0 - unit @ unit.T
    rows = [pair_distances(emb[i:i + chunk, None, :].expand(-1, len(emb), -1),
                           emb[None, :, :].expand(len(emb[i:i + chunk]), -1, -1), metric, head)
            for i in range(0, len(emb), chunk)]
    return torch.cat(rows)
