"""The three verification objectives and online mining, against numbers worked out by hand."""

import math

import pytest
import torch

from cnntool.models.embedding import SimilarityHead, embedding_net, load_backbone
from cnntool.tasks.verify import losses as verify

# Four 2-D embeddings, two identities. Squared distances: d01 = 1, d02 = 4, d03 = 8, d12 = 5, d13 = 5, d23 = 4.
EMB = torch.tensor([[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [2.0, 2.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_batch_hard_triplet_loss():
    # Per anchor: hardest positive, nearest negative → max(d_ap − d_an + 0.2, 0):
    # a0: 1 − 4, a1: 1 − 5, a2: 4 − 4 (+0.2 → 0.2), a3: 4 − 5 → mean 0.2 / 4.
    assert float(verify.triplet_loss(EMB, LABELS, 0.2, "batch-hard")) == pytest.approx(0.05)


def test_batch_all_triplet_loss_averages_active_triplets():
    # Of the 8 valid triplets only (a2, p3, n0) is active: 4 − 4 + 0.2.
    assert float(verify.triplet_loss(EMB, LABELS, 0.2, "batch-all")) == pytest.approx(0.2)


def test_triplet_loss_without_a_valid_triplet_is_zero_with_a_graph():
    emb = EMB.clone().requires_grad_()
    loss = verify.triplet_loss(emb, torch.tensor([0, 1, 2, 3]), 0.2, "batch-hard")
    loss.backward()
    assert float(loss.detach()) == 0.0 and emb.grad is not None


# 1-D points for mining: anchor 0 at 0, its positive 1 at 1 (d_ap = 1); negatives at 1.05 (d = 1.1025,
# semi-hard: 1 < 1.1025 < 1.2), 3 (d = 9, easy) and −0.5 (d = 0.25, hard).
MINE_EMB = torch.tensor([[0.0], [1.0], [1.05], [3.0], [-0.5]])
MINE_LABELS = torch.tensor([0, 0, 1, 1, 1])


def _triplets(mining):
    a, p, n = verify.mine_triplets(MINE_EMB, MINE_LABELS, 0.2, mining)
    return {(int(x), int(y), int(z)) for x, y, z in zip(a, p, n)}


def test_semi_hard_mining_picks_the_nearest_negative_beyond_the_positive():
    assert (0, 1, 2) in _triplets("semi-hard")


def test_semi_hard_without_candidates_takes_the_farthest_negative():
    # Anchor 1 (at 1), positive 0: d_ap = 1; negatives at d = 0.0025, 4, 2.25: none in (1, 1.2) → farthest (3).
    assert (1, 0, 3) in _triplets("semi-hard")


def test_batch_hard_mining_picks_farthest_positive_and_nearest_negative():
    triplets = _triplets("batch-hard")
    assert (0, 1, 4) in triplets  # anchor 0: only positive 1; nearest negative −0.5
    # anchor 3 (at 3): positives 1.05 (d 3.8025) and −0.5 (d 12.25) → −0.5; nearest negative 1 (d 4).
    assert (3, 4, 1) in triplets


def test_batch_all_mining_lists_every_valid_triplet():
    # Identity 0: 2 anchors × 1 positive × 3 negatives; identity 1: 3 anchors × 2 positives × 2 negatives.
    assert len(_triplets("batch-all")) == 6 + 12


def test_contrastive_loss():
    emb = torch.tensor([[0.0, 0.0], [0.6, 0.8], [0.0, 0.5]])
    labels = torch.tensor([0, 0, 1])
    # same (0,1): d² = 1; different (0,2): (1 − 0.5)² = 0.25; (1,2): (1 − √0.45)²; balanced mean.
    different = (0.25 + (1 - math.sqrt(0.45)) ** 2) / 2
    assert float(verify.contrastive_loss(emb, labels, 1.0)) == pytest.approx((1.0 + different) / 2, rel=1e-5)


def test_similarity_head_loss():
    head = SimilarityHead(2)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[-1.0, -2.0]]))
        head.fc.bias.fill_(0.5)
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # logits: (0,1) −1 + 0.5 (same), (0,2) −2 + 0.5, (1,2) −3 + 0.5 (different); BCE, balanced.
    same = math.log1p(math.exp(0.5))
    different = (math.log1p(math.exp(-1.5)) + math.log1p(math.exp(-2.5))) / 2
    assert float(verify.similarity_loss(head, emb, labels).detach()) == pytest.approx((same + different) / 2, rel=1e-5)


def test_pair_distances_per_metric():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    assert float(verify.pair_distances(a, b, "euclidean")) == pytest.approx(5.0)
    assert float(verify.pair_distances(a, b, "cosine")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="similarity head"):
        verify.pair_distances(a, b, "learned")
    emb = torch.randn(5, 3)
    full = verify.all_pair_distances(emb, "cosine")
    assert torch.allclose(full[1, 3], verify.pair_distances(emb[1:2], emb[3:4], "cosine")[0], atol=1e-6)


def test_embedding_net_replaces_the_classifier_and_normalizes():
    net = embedding_net(backbone="lenet5-relu", dim=16, in_channels=1, backbone_kwargs={"input_size": [28, 28]},
                        similarity_head=True)
    out = net(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 16) and torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    # Fine-tuning: a classifier's weights fill everything but the classifier fc.
    from cnntool.models import catalog

    classifier = catalog.get("lenet5-relu").build(input_size=[28, 28])
    left = load_backbone(net, classifier.state_dict())
    assert left == ["classifier.5.bias", "classifier.5.weight"]
    assert torch.equal(net.backbone.features[0].weight, classifier.features[0].weight)
