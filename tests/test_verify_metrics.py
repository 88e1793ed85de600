"""ROC AUC, EER and TAR@FAR on a hand-made score set; p_same against the exact posterior of two Gaussians."""

import numpy as np
import pytest
import torch

from cnntool.tasks.verify.losses import all_pair_distances
from cnntool.tasks.verify.metrics import VerifyMetrics, fit_same_probability, roc_report, same_probability

# Same pairs and different pairs as distances (same when distance ≤ threshold).
SAME = [0.1, 0.2, 0.35, 0.5]
DIFFERENT = [0.3, 0.6, 0.7, 0.8]


def _report():
    return roc_report(SAME + DIFFERENT, [True] * 4 + [False] * 4, fars=(0.1, 0.25))


def test_auc_is_the_fraction_of_correctly_ordered_pairs():
    # 16 (same, different) pairs; 0.35 and 0.5 are not below 0.3: 14 / 16.
    assert _report()["auc"] == pytest.approx(14 / 16)


def test_eer_and_its_threshold():
    # At 0.35: 1 of 4 same rejected (0.5), 1 of 4 different accepted (0.3): FRR = FAR = 0.25.
    r = _report()
    assert r["eer"] == pytest.approx(0.25) and r["eer_threshold"] == pytest.approx(0.35)


def test_tar_at_far():
    r = _report()["tar_at_far"]
    # No different pair may pass at FAR 0.1: threshold 0.2 accepts 2 of 4 same pairs.
    assert r["0.1"] == {"tar": 0.5, "far": 0.0, "threshold": pytest.approx(0.2)}
    # FAR 0.25 allows 0.3 through: threshold 0.5 accepts every same pair.
    assert r["0.25"] == {"tar": 1.0, "far": 0.25, "threshold": pytest.approx(0.5)}


def test_counts_and_one_sided_sets():
    r = _report()
    assert (r["pairs"], r["same_pairs"], r["different_pairs"]) == (8, 4, 4)
    with pytest.raises(ValueError, match="both"):
        roc_report([0.1, 0.2], [True, True])


def test_accumulator_separable_identities_score_one():
    emb = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    labels = torch.tensor([0, 0, 1, 1])
    metrics = VerifyMetrics(lambda e: all_pair_distances(e, "euclidean"))
    metrics.update(emb[:2].flip(0), labels[:2])  # one identity: no AUC for this batch
    metrics.update(emb, labels)
    assert metrics.summary() == {"auc": 1.0}
    report = metrics.compute()
    assert report["images"] == 6 and report["identities"] == 2 and report["auc"] == 1.0 and report["eer"] == 0.0


def test_p_same_recovers_the_posterior_of_two_gaussians_whatever_the_mix_of_pairs():
    # Same-pair distances ~ N(0.4, σ), different ~ N(0.9, σ), σ = 0.15. With a 1:1 prior the exact posterior is
    # logistic: log-odds(same) = d·(μs − μd)/σ² + (μd² − μs²)/(2σ²): slope 22.2, offset −14.44, 0.5 at 0.65.
    rng = np.random.default_rng(0)
    same, different = rng.normal(0.4, 0.15, 2_000), rng.normal(0.9, 0.15, 20_000)  # ten different per same
    fit = fit_same_probability(np.r_[same, different], [True] * len(same) + [False] * len(different))
    slope, offset = 0.5 / 0.15**2, -(0.9**2 - 0.4**2) / (2 * 0.15**2)
    assert fit["slope"] == pytest.approx(slope, rel=0.1) and fit["offset"] == pytest.approx(offset, rel=0.1)
    assert fit["distance_at_half"] == pytest.approx(0.65, abs=0.01) and fit["pairs"] == 22_000
    d = np.linspace(0.2, 1.1, 10)
    assert np.abs(same_probability(fit, d) - 1 / (1 + np.exp(slope * d + offset))).max() < 0.03
    with pytest.raises(ValueError, match="both"):
        fit_same_probability([0.1, 0.2], [True, True])
