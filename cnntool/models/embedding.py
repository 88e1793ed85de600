"""Embedding networks for verification: a registry backbone whose last fc becomes the embedding layer.

f(x) is L2-normalized (FaceNet's hypersphere), so Euclidean distances lie in [0, 2] and one margin suits
every backbone. The optional similarity head is the lecture's learned metric
ŷ = σ(Σ_k w_k |f(x_i)_k − f(x_j)_k| + b); it lives in the model so its weights train and ship with it.
`dlib_face_resnet` wraps dlib's face descriptor (cnntool.faces.api) behind the same interface.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cnntool.models import catalog


class SimilarityHead(nn.Module):
    """ŷ logit = Σ_k w_k |a_k − b_k| + b (σ applied by the caller / the loss)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 1)
        # Start as "closer is more similar": negative weights on |a − b|, positive bias.
        nn.init.constant_(self.fc.weight, -1.0 / dim ** 0.5)
        nn.init.constant_(self.fc.bias, 1.0)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.fc((a - b).abs()).squeeze(-1)


class EmbeddingNet(nn.Module):
    def __init__(self, backbone: nn.Module, dim: int, similarity_head: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.dim = dim
        self.head = SimilarityHead(dim) if similarity_head else None

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.backbone(x).float(), dim=1)


def _last_linear(module: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent, attribute name, layer) of the last nn.Linear in registration order: the classifier."""
    found = None
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child)
    if found is None:
        raise ValueError("the backbone has no fully connected layer to turn into an embedding layer")
    return found


def embedding_net(*, backbone: str, dim: int = 64, in_channels: int = 1, similarity_head: bool = False,
                  backbone_kwargs: Mapping[str, Any] | None = None) -> EmbeddingNet:
    """Any classify backbone of the registry with its last fc replaced by a `dim`-wide embedding layer."""
    spec = catalog.get(backbone, task="classify")
    net = spec.build(**{**dict(backbone_kwargs or {}), "in_channels": in_channels})
    parent, name, last = _last_linear(net)
    setattr(parent, name, nn.Linear(last.in_features, dim))
    return EmbeddingNet(net, dim, similarity_head)


def load_backbone(model: EmbeddingNet, state: Mapping[str, Tensor]) -> list[str]:
    """Fine-tuning: copy a trained classifier's weights (its plain state dict) into the backbone, all but
    the classifier fc, whose shape differs; returns the names left at their initial values."""
    own = model.backbone.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fitting:
        raise ValueError("no weights of that file fit this backbone")
    model.backbone.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


class DlibFaceResNet(nn.Module):
    """dlib's 128-d face descriptor (faces.api.FaceEmbedder) as a module: (N, 3, 150, 150) pixel values
    0..255 (aligned chips) → (N, 128). Not normalized: dlib's 0.6 threshold is on the raw vectors."""

    def __init__(self) -> None:
        super().__init__()
        from cnntool.faces.api import FaceEmbedder

        self.embedder = FaceEmbedder()
        self.dim = 128
        self.head = None

    def forward(self, x: Tensor) -> Tensor:
        chips = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return self.embedder.embed(list(chips)).to(x.device)


def dlib_face_resnet() -> DlibFaceResNet:
    return DlibFaceResNet()
