"""The gallery: identities from folders or file names, and a cache that re-embeds only changed files."""

import os

import pytest
import torch
from PIL import Image

from cnntool.errors import ConfigError
from cnntool.tasks.verify.run import build_gallery, gallery_files, read_pairs

KEY = {"model": "test", "detect": False}


class CountingEmbedder:
    """Embeds an image as its mean colour; counts calls; 'noface' files fail as a detector would."""

    def __init__(self):
        self.calls = []

    def __call__(self, path):
        self.calls.append(os.path.basename(path))
        if "noface" in path:
            raise ValueError(f"no face found in {path}")
        return torch.tensor(Image.open(path).convert("RGB").getpixel((0, 0)), dtype=torch.float32)


def _image(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


@pytest.fixture
def gallery(tmp_path):
    root = tmp_path / "people"
    _image(root / "alice" / "a1.png", (255, 0, 0))
    _image(root / "alice" / "sub" / "a2.png", (250, 0, 0))
    _image(root / "bob_1.png", (0, 0, 255))
    _image(root / "carol.png", (0, 255, 0))
    (root / "notes.txt").write_text("not an image")
    return root


def test_identities_from_folders_and_names(gallery):
    found = {p.name: who for p, who in gallery_files(gallery)}
    assert found == {"a1.png": "alice", "a2.png": "alice", "bob_1.png": "bob", "carol.png": "carol"}


def test_empty_or_missing_gallery_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        gallery_files(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no images"):
        gallery_files(tmp_path)


def test_cache_re_embeds_only_changed_files(gallery, tmp_path):
    cache = tmp_path / "cache.safetensors"
    embed = CountingEmbedder()
    first = build_gallery(gallery, embed, KEY, cache)
    assert first.embedded_now == 4 and sorted(first.identities) == ["alice", "alice", "bob", "carol"]
    embed.calls.clear()
    again = build_gallery(gallery, embed, KEY, cache)
    assert embed.calls == [] and torch.equal(again.embeddings, first.embeddings)
    # A changed file (new size and mtime) and a new one are embedded; the rest come from the cache.
    _image(gallery / "bob_1.png", (0, 0, 200)).touch()
    os.utime(gallery / "bob_1.png", ns=(1, 1))
    _image(gallery / "dave_1.png", (9, 9, 9))
    changed = build_gallery(gallery, embed, KEY, cache)
    assert sorted(embed.calls) == ["bob_1.png", "dave_1.png"]
    assert changed.embeddings[changed.identities.index("bob")].tolist() == [0.0, 0.0, 200.0]
    # A removed file leaves the gallery without being re-embedded.
    embed.calls.clear()
    (gallery / "carol.png").unlink()
    assert "carol" not in build_gallery(gallery, embed, KEY, cache).identities and embed.calls == []
    # Another model or face setting: everything again.
    assert build_gallery(gallery, embed, {**KEY, "detect": True}, cache).embedded_now == 4


def test_failed_files_are_reported_and_not_retried_until_changed(gallery, tmp_path):
    _image(gallery / "erin_noface.png", (1, 2, 3))
    cache, warnings = tmp_path / "c.safetensors", []
    embed = CountingEmbedder()
    build_gallery(gallery, embed, KEY, cache, warnings.append)
    assert any("erin_noface.png" in w and "no face" in w for w in warnings)
    embed.calls.clear()
    result = build_gallery(gallery, embed, KEY, cache, warnings.append)
    assert embed.calls == [] and "erin" not in result.identities


def test_pairs_file(tmp_path):
    listing = tmp_path / "pairs.txt"
    listing.write_text("# a comment\na.jpg b.jpg same\n/abs/c.jpg, d.jpg, 0\n")
    assert read_pairs(listing) == [(str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), True),
                                   ("/abs/c.jpg", str(tmp_path / "d.jpg"), False)]
    listing.write_text("a.jpg b.jpg maybe\n")
    with pytest.raises(ConfigError, match="pairs.txt:1"):
        read_pairs(listing)
