"""The convolutional implementation of sliding windows scores exactly what the windowed classifier does."""

import pytest
import torch

from cnntool import weights

from cnntool.models import catalog
from cnntool.data.builtin import photo_paths
from cnntool.models import sliding
from cnntool.preprocess import Preprocessor


@pytest.fixture(scope="module")
def classifier():
    model = catalog.get("window-digits").build()
    try:
        state, _ = weights.load(weights.resolve("window-digits"))
        weights.load_into(model, state, source="window-digits")
    except Exception:  # the embedded classifier not trained yet: any weights show the equivalence
        torch.manual_seed(0)
    return model.eval()


@pytest.fixture(scope="module")
def photos():
    paths = photo_paths()[:3]
    assert paths, "no bundled photos found"
    pre = Preprocessor(catalog.get("conv-sliding-windows-digits").input)
    return torch.stack([pre(__import__("PIL.Image", fromlist=["Image"]).open(p).convert("RGB"))[0] for p in paths])


def test_fc_layers_become_convolutions_by_reshaping_the_same_weights(classifier):
    scorer = sliding.ConvWindowScorer(classifier)
    assert torch.equal(scorer.fc1.weight.flatten(1), classifier.fc1.weight)
    assert torch.equal(scorer.fc2.weight.flatten(1), classifier.fc2.weight)
    assert scorer.features is classifier.features  # shared, not copied: nothing is retrained


def test_one_pass_scores_equal_every_window_classified_alone(classifier, photos):
    scorer = sliding.ConvWindowScorer(classifier)
    with torch.inference_mode():
        for level in (photos, torch.nn.functional.interpolate(photos, size=(76, 76), mode="bilinear")):
            conv = scorer(level)
            windowed = sliding.windowed_logits(classifier, level)
            assert conv.shape == windowed.shape == (len(photos), 11, (level.shape[2] - 32) // 4 + 1,
                                                    (level.shape[3] - 32) // 4 + 1)
            assert torch.allclose(conv, windowed, atol=1e-5)
            # Spot check against a crop classified by the plain classifier.
            i, j = 3, 5
            crop = level[:, :, 4 * i:4 * i + 32, 4 * j:4 * j + 32]
            assert torch.allclose(classifier(crop), conv[:, :, i, j], atol=1e-5)


def test_both_detectors_give_the_same_detections(classifier, photos):
    windowed = sliding.SlidingWindows(classifier, background=10, convolutional=False)
    conv = sliding.SlidingWindows(classifier, background=10, convolutional=True)
    with torch.inference_mode():
        for a, b in zip(windowed(photos), conv(photos)):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
            assert torch.allclose(a["scores"], b["scores"], atol=1e-6)
            assert a["boxes"].min() >= 0 and a["boxes"].max() <= 96 + 1e-4
