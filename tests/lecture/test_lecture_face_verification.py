"""The lecture's face verification: a Siamese network (one network, two inputs), the triplet loss
max(‖f(A)−f(P)‖² − ‖f(A)−f(N)‖² + α, 0), and verification as binary classification with a learned similarity
ŷ = σ(Σ_k w_k |f(x_i)_k − f(x_j)_k| + b). Run through cnntool's losses and its similarity head on hand numbers."""

import math

import pytest
import torch

from cnntool.models import catalog
from cnntool.models.embedding import SimilarityHead
from cnntool.tasks.verify.losses import pair_distances, triplet_loss

ALPHA = 0.2


def test_lecture_triplet_loss_on_hand_numbers():
    """f(A) = (0, 0), f(P) = (1, 0), f(N) = (−0.5, 0): 1 − 0.25 + 0.2 = 0.95 for the triplet (A, P, N); with P as
    the anchor the negative is far enough (1 − 2.25 + 0.2 < 0) and adds nothing."""
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    loss = triplet_loss(emb, labels, margin=ALPHA, mining="batch-all")
    assert loss.item() == pytest.approx(0.95, abs=1e-6)
    loss.backward()  # the loss trains the embedding
    assert emb.grad.abs().sum() > 0


def test_lecture_triplet_loss_is_zero_once_the_negative_is_alpha_farther():
    # A: 0.25 − 1 + 0.2 < 0; P as the anchor: 0.25 − 2.25 + 0.2 < 0
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.4], [-0.6, -0.8]], dtype=torch.float64)
    assert triplet_loss(emb, torch.tensor([0, 0, 1]), margin=ALPHA, mining="batch-all").item() == 0.0


def test_lecture_similarity_head_is_sigmoid_of_weighted_absolute_differences():
    head = SimilarityHead(3)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]]))
        head.fc.bias.fill_(0.25)
    f_i, f_j = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 0.0, 3.0]])
    # Σ_k w_k |f_i − f_j|_k + b = 0.5·1 − 1·2 + 2·0 + 0.25 = −1.25
    lecture = 1 / (1 + math.exp(1.25))
    with torch.no_grad():
        assert torch.sigmoid(head(f_i, f_j)).item() == pytest.approx(lecture, abs=1e-6)
        assert pair_distances(f_i, f_j, "learned", head).item() == pytest.approx(1 - lecture, abs=1e-6)


def test_lecture_siamese_one_network_encodes_both_images():
    spec = catalog.get("embedding-net")
    torch.manual_seed(0)
    net = spec.build().eval()
    x = torch.rand(2, spec.input.channels, *spec.input.size)
    with torch.no_grad():
        together, alone = net(x), torch.cat([net(x[:1]), net(x[1:])])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)  # the same f(·) for x_i and x_j
    assert torch.linalg.vector_norm(together, dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
