"""Every corpus kind through the opener and the preprocessor: bad inputs become one ImageError with a
one-line message; odd-but-valid inputs become the right upright 8-bit pixels."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch  # noqa: F401  imported here so its first-import time never counts against a time limit
from PIL import Image, ImageFile

from cnntool.preprocess import IMAGE_FORMATS, ImageError, Preprocessor, open_image
from cnntool.registry import InputSpec
from cnntool.sources import IMAGE_SUFFIXES, MissingSource, display_name, expand

from .corpus import ASYMMETRIC, ERROR, OK, bad_paths, blocks, build_corpus, exif_bytes, good_paths, jpeg, \
    stored_for_orientation
from .deadline import time_limit

SPECS = {
    1: InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.5,)),
    3: InputSpec(size=(32, 32), channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}
LIMIT_S = 5  # generous for a shared machine; a hang is what this catches


def expected_pixels(item, channels: int) -> np.ndarray:
    return item.rgb if channels == 3 else item.grey


def assert_one_line_image_error(excinfo: pytest.ExceptionInfo) -> None:
    assert excinfo.type is ImageError  # not a subclass, not a PIL or OS error leaking through
    message = str(excinfo.value)
    assert message and message == message.strip() and "\n" not in message and "\r" not in message
    assert len(message) <= 300


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("channels", [1, 3])
def test_bad_input_raises_one_line_image_error(bad_item, channels):
    with time_limit(LIMIT_S), pytest.raises(Exception) as excinfo:
        open_image(bad_item.path, channels=channels)
    assert_one_line_image_error(excinfo)


@pytest.mark.parametrize("channels", [1, 3])
def test_bad_input_fails_the_preprocessor_the_same_way(bad_item, channels):
    with time_limit(LIMIT_S), pytest.raises(Exception) as excinfo:
        Preprocessor(SPECS[channels]).load(bad_item.path)
    assert_one_line_image_error(excinfo)


@pytest.mark.parametrize("name, message", [
    ("zero_bytes", "empty file"),
    ("directory_named_jpg", "is a directory, not an image"),
    ("fifo_named_jpg", "not a regular file (a FIFO, device or socket)"),
    ("device_named_png", "not a regular file (a FIFO, device or socket)"),
    ("broken_symlink", "broken symbolic link"),
    ("missing_file", "no such file"),
    ("text_named_jpg", "not an image file (unknown or corrupt format)"),
    ("unknown_format_xcf", "not an image file (unknown or corrupt format)"),
    ("postscript_named_jpg", "not an image file (unknown or corrupt format)"),
    ("png_bad_crc", "not an image file (unknown or corrupt format)"),
    ("bomb_png_header_60mp",
     "image is 10000x6000 = 60 MP, over the 50 MP limit (decompression-bomb guard; raise it with --max-pixels)"),
    ("bomb_png_header_50k",
     "image is over 179 MP, over the 50 MP limit (decompression-bomb guard; raise it with --max-pixels)"),
])
def test_messages_say_what_is_wrong(corpus, name, message):
    item = next(i for i in corpus[1] if i.name == name)
    with pytest.raises(ImageError) as excinfo:
        open_image(item.path)
    assert str(excinfo.value) == message


@pytest.mark.parametrize("name", ["truncated_jpeg", "truncated_png", "truncated_gif", "corrupt_huffman_jpeg",
                                  "corrupt_middle_png"])
def test_truncated_and_corrupt_data_is_reported_as_such(corpus, name):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # PIL's default; True would pad truncated files
    item = next(i for i in corpus[1] if i.name == name)
    with pytest.raises(ImageError, match=r"^truncated or corrupt image data \(.+\)$"):
        open_image(item.path)


@pytest.mark.parametrize("name", ["bomb_png_header_50k", "bomb_png_header_60mp"])
def test_bombs_are_refused_from_the_header_without_decoding(corpus, name, monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    item = next(i for i in corpus[1] if i.name == name)
    with time_limit(1), pytest.raises(ImageError, match="decompression-bomb guard"):
        open_image(item.path)


def test_limit_above_pils_own_refusal_names_pils_limit(corpus):
    item = next(i for i in corpus[1] if i.name == "bomb_png_header_50k")
    with pytest.raises(ImageError, match=r"^image is over PIL's own limit of 179 MP \(PIL.Image.MAX_IMAGE_PIXELS\)$"):
        open_image(item.path, max_pixels=10**10)


def test_max_pixels_is_ours_and_exact(corpus):
    item = next(i for i in corpus[1] if i.name == "exif_orientation_6")  # 32x48 stored, 1536 pixels
    assert open_image(item.path, max_pixels=1536).size == (48, 32)
    with pytest.raises(ImageError, match=r"^image is 32x48 = 0.0015 MP, over the 0.0015 MP limit "):
        open_image(item.path, max_pixels=1535)


def test_opened_formats_are_exactly_those_of_the_listed_suffixes():
    by_suffix = Image.registered_extensions()
    assert {by_suffix[suffix] for suffix in IMAGE_SUFFIXES} == set(IMAGE_FORMATS)


def test_nul_byte_in_path_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="^invalid file name$"):
        open_image(os.path.join(tmp_path, "nul\0byte.png"))


# ---------------------------------------------------------------- odd but valid inputs


@pytest.mark.parametrize("channels", [1, 3])
def test_valid_input_opens_as_upright_8bit_pixels(good_item, channels):
    with time_limit(LIMIT_S):
        img = open_image(good_item.path, channels=channels)
    assert img.mode == ("L" if channels == 1 else "RGB")
    assert img.size == good_item.size
    if good_item.rgb is not None:
        got = np.asarray(img).astype(np.int64)
        want = expected_pixels(good_item, channels).astype(np.int64)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= good_item.atol


@pytest.mark.parametrize("channels", [1, 3])
def test_valid_input_through_the_preprocessor(good_item, channels):
    spec = SPECS[channels]
    with time_limit(LIMIT_S):
        tensor, geometry = Preprocessor(spec).load(good_item.path)
    assert tuple(tensor.shape) == (channels, 32, 32)
    assert (geometry.width, geometry.height) == good_item.size
    if good_item.rgb is not None:
        # Reference: the known upright picture, resized the way the spec says (stretch, bilinear).
        reference = Image.fromarray(expected_pixels(good_item, channels)).resize((32, 32), Image.BILINEAR,
                                                                                reducing_gap=None)
        want = np.asarray(reference, dtype=np.float64).reshape(32, 32, channels).transpose(2, 0, 1)
        got = tensor.double().numpy() * 127.5 + 127.5  # undo mean 0.5, std 0.5
        assert np.abs(got - want).max() <= good_item.atol + 1


def test_orientations_differ_on_disk_but_open_identically(corpus):
    items = {i.name: i for i in corpus[1]}
    stored = [Image.open(items[f"exif_orientation_{o}"].path).size for o in range(1, 9)]
    assert stored == [(48, 32)] * 4 + [(32, 48)] * 4
    upright = [np.asarray(open_image(items[f"exif_orientation_{o}"].path)) for o in range(1, 9)]
    for o, pixels in enumerate(upright, start=1):
        corners = pixels[[0, 0, -1, -1], [0, -1, 0, -1]].astype(np.int64)
        assert np.abs(corners - [[255, 0, 0], [0, 0, 255], [255, 255, 0], [0, 0, 0]]).max() <= 4, o


@pytest.mark.parametrize("orientation", range(1, 9))
def test_draft_decoding_keeps_orientation_and_full_size(tmp_path, orientation):
    """A JPEG big enough for draft mode (decoded at 1/4 scale for a 32x32 input) still comes out upright,
    and the Geometry still speaks in full-resolution upright pixels."""
    upright = blocks(ASYMMETRIC, block=64)  # 192x128
    path = tmp_path / f"big-{orientation}.jpg"
    path.write_bytes(jpeg(stored_for_orientation(upright, orientation), exif=exif_bytes(orientation)))
    preprocessor = Preprocessor(SPECS[3])
    img, full_size = preprocessor.open(path)
    assert full_size == (192, 128) and img.size == (48, 32)
    tensor, geometry = preprocessor.load(path)
    assert (geometry.width, geometry.height) == (192, 128)
    corners = tensor[:, [0, 0, -1, -1], [0, -1, 0, -1]].T.numpy() * 127.5 + 127.5
    assert np.abs(corners - [[255, 0, 0], [0, 0, 255], [255, 255, 0], [0, 0, 0]]).max() <= 6


def test_non_utf8_name_opens_as_str_and_as_bytes(corpus):
    item = next(i for i in corpus[1] if i.name == "name_not_utf8")
    assert np.array_equal(np.asarray(open_image(item.path)), item.rgb)
    assert np.array_equal(np.asarray(open_image(os.fsencode(item.path))), item.rgb)
    shown = display_name(item.path)
    assert shown.endswith("caf\\xe9-latin1.png") and "\n" not in shown
    shown.encode("utf-8")  # printable and JSON-safe


# ---------------------------------------------------------------- the corpus itself


def test_corpus_has_every_kind_and_helpers_split_it(tmp_path):
    items = build_corpus(tmp_path)
    names = [i.name for i in items]
    assert len(names) == len(set(names)) >= 25
    assert all(i.expected in (ERROR, OK) for i in items)
    assert all(i.rgb is not None or i.size_only is not None for i in items if i.expected == OK)
    assert set(good_paths(items)) | set(bad_paths(items)) == {i.path for i in items if i.skip is None}
    assert not set(good_paths(items)) & set(bad_paths(items))


# ---------------------------------------------------------------- sources.expand over the corpus


@pytest.fixture(scope="module")
def listable_corpus(tmp_path_factory):
    """The corpus without its symlink loop (listed on its own below)."""
    directory = tmp_path_factory.mktemp("listable")
    items = [i for i in build_corpus(directory) if i.name != "symlink_loop"]
    os.remove(os.path.join(directory, "loop-a.png"))
    os.remove(os.path.join(directory, "loop-b.png"))
    return os.fspath(directory), items


def test_expand_lists_the_corpus_directory_sorted_and_stable(listable_corpus):
    directory, items = listable_corpus
    listed = list(expand([directory]))
    assert listed == sorted(listed) == list(expand([directory]))
    assert not any(isinstance(p, MissingSource) for p in listed)
    not_listed = {"directory_named_jpg", "unknown_format_xcf", "missing_file"}  # a dir; no image suffix; absent
    assert set(listed) == {i.path for i in items if i.name not in not_listed}
    assert all(os.path.splitext(p)[1] in IMAGE_SUFFIXES for p in listed)


def test_every_listed_path_meets_its_expectation_in_the_opener(listable_corpus):
    directory, items = listable_corpus
    expectation = {i.path: i for i in items}
    for path in expand([directory]):
        item = expectation[path]
        if item.skip:
            continue
        if item.expected == ERROR:
            with time_limit(LIMIT_S), pytest.raises(ImageError):
                open_image(path)
        else:
            assert open_image(path).size == item.size


def test_expand_lists_a_directory_holding_a_symlink_loop(corpus):
    directory, items = corpus
    loop = next(i for i in items if i.name == "symlink_loop")
    assert loop.path in list(expand([directory]))


def test_directory_named_like_an_image_reaches_the_opener_when_named(corpus):
    item = next(i for i in corpus[1] if i.name == "directory_named_jpg")
    assert list(expand([item.path])) == [item.path]
    with pytest.raises(ImageError, match="is a directory"):
        open_image(item.path)


def test_broken_symlink_is_yielded_then_fails_in_the_opener(corpus):
    item = next(i for i in corpus[1] if i.name == "broken_symlink")
    assert list(expand([item.path])) == [item.path]
    with pytest.raises(ImageError, match="^broken symbolic link$"):
        open_image(item.path)


def test_a_name_with_glob_characters_is_taken_literally(corpus):
    item = next(i for i in corpus[1] if i.name == "name_with_glob_characters")
    assert list(expand([item.path])) == [item.path]


def test_list_file_and_stdin_carry_spaces_and_odd_names(corpus):
    directory, items = corpus
    by_name = {i.name: i for i in items}
    wanted = [by_name["name_with_spaces"], by_name["name_not_utf8"], by_name["name_with_glob_characters"]]
    list_file = os.path.join(directory, "inputs.txt")
    with open(list_file, "wb") as fh:  # relative names: resolved against the list file's directory
        fh.write(b"".join(os.fsencode(os.path.basename(i.path)) + b"\n" for i in wanted))
    try:
        from_list = list(expand(["@" + list_file]))
    finally:
        os.remove(list_file)
    from_stdin = list(expand(["-"], stdin=io.StringIO("".join(i.path + "\n" for i in wanted))))
    assert from_list == from_stdin == [i.path for i in wanted]
    for path, item in zip(from_list, wanted):
        assert np.array_equal(np.asarray(open_image(path)), item.rgb)


def test_a_newline_in_a_name_cannot_travel_in_a_list(corpus):
    """Documented: the list splits the name in two; each half is a missing file, reported one by one."""
    item = next(i for i in corpus[1] if i.name == "name_with_newline")
    head, tail = item.path.split("\n")
    assert list(expand(["-"], stdin=io.StringIO(item.path + "\n"))) == [head, tail]
    for half in (head, tail):
        with pytest.raises(ImageError, match="^no such file$"):
            open_image(half)
    assert list(expand([item.path])) == [item.path]  # as an argument it works
    assert open_image(item.path).size == item.size
