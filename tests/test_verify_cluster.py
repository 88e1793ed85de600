"""verify-face cluster on a folder of real photos: five people, each in several crops, flips and scales, one
photo holding two of them, and photos without a face. Every cluster must hold one person and every person
must be one cluster."""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnntool import cli
from cnntool.tasks.verify.cluster import chinese_whispers

skimage_data = pytest.importorskip("skimage.data", reason="the photos come from scikit-image: pip install scikit-image")
OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
MESSI = OPENCV_DOC / "examples/data/messi5.jpg"
SMILING = OPENCV_DOC / "opencv4/html/227943776_1.jpg"  # the face-swapping sample's two men
BEARDED = OPENCV_DOC / "opencv4/html/230501201_1.jpg"
FAST = ["--upsample", "0", "--threads", "1", "-f", "jsonl", "-q"]  # every face here is ≥ 100 px


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        pytest.skip(f"{path} is missing: apt-get install opencv-doc")
    return Image.open(path).convert("RGB")


def _variant(img: Image.Image, box, size: int, flip: bool = False) -> Image.Image:
    out = img.crop(box).resize((size, size), Image.BILINEAR)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """photo file name → the person in it (None: no face); the two-person photo is a list, left to right."""
    astronaut = Image.fromarray(skimage_data.astronaut())
    camera = Image.fromarray(skimage_data.camera()).convert("RGB")
    messi, smiling, bearded = _open(MESSI), _open(SMILING), _open(BEARDED)
    photos = {
        ("astronaut_a.jpg", "astronaut"): _variant(astronaut, (100, 20, 340, 260), 240),
        ("astronaut_b.png", "astronaut"): _variant(astronaut, (120, 30, 320, 230), 300, flip=True),
        ("astronaut_c.png", "astronaut"): astronaut.resize((400, 400), Image.BILINEAR),
        ("camera_a.png", "camera"): _variant(camera, (130, 60, 320, 250), 300),
        ("camera_b.png", "camera"): _variant(camera, (110, 40, 340, 270), 260, flip=True),
        ("messi_a.png", "messi"): _variant(messi, (171, 43, 311, 183), 350),
        ("messi_b.png", "messi"): _variant(messi, (181, 58, 301, 178), 260, flip=True),
        ("smiling_a.jpg", "smiling"): _variant(smiling, (60, 40, 340, 320), 280),
        ("smiling_b.png", "smiling"): _variant(smiling, (100, 80, 300, 280), 250, flip=True),
        ("bearded_a.png", "bearded"): bearded.resize((292, 412), Image.BILINEAR),
        ("bearded_b.png", "bearded"): _variant(bearded, (140, 230, 470, 560), 300),
        ("coffee.png", None): Image.fromarray(skimage_data.coffee()).resize((300, 200)),
        ("chelsea.png", None): Image.fromarray(skimage_data.chelsea()).resize((300, 225)),
    }
    d = tmp_path_factory.mktemp("cluster") / "photos"
    d.mkdir()
    people = {}
    for (name, person), img in photos.items():
        img.save(d / name)
        people[name] = person
    pair = Image.new("RGB", (520, 260))
    pair.paste(_variant(camera, (120, 50, 330, 260), 240), (10, 10))
    pair.paste(_variant(smiling, (80, 60, 320, 300), 240), (270, 10))
    pair.save(d / "pair.png")
    people["pair.png"] = ["camera", "smiling"]
    return d, people


def run(argv, capsys):
    try:
        cli.main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_every_cluster_is_one_person_and_every_person_one_cluster(folder, tmp_path, capsys):
    photos, people = folder
    code, records = run(["verify-face", "cluster", photos, "--save", tmp_path / "people", *FAST], capsys)
    assert code == 0
    assert sorted(Path(r["source"]).name for r in records) == sorted(
        name for name, p in people.items() for _ in (p if isinstance(p, list) else [p]))
    persons_of, clusters_of = defaultdict(set), defaultdict(set)
    for r in records:
        truth = people[Path(r["source"]).name]
        if truth is None:
            assert (r["face"], r["box"], r["score"], r["cluster"]) == (None, None, None, None)
            continue
        if isinstance(truth, list):  # faces are numbered largest first: these are the same size, so by box
            truth = truth[0] if r["box"][0] < 260 else truth[1]
        persons_of[r["cluster"]].add(truth)
        clusters_of[truth].add(r["cluster"])
    assert all(len(p) == 1 for p in persons_of.values()), dict(persons_of)
    assert all(len(c) == 1 for c in clusters_of.values()), dict(clusters_of)
    assert len(clusters_of) == 5
    # Cluster ids in order of first appearance; --save wrote every face's chip into its cluster's folder.
    ids = [r["cluster"] for r in records if r["cluster"] is not None]
    assert sorted(set(ids)) == list(range(5)) and ids[0] == 0
    for r in records:
        if r["cluster"] is not None:
            saved = Path(r["saved"])
            assert saved.parent.name == f"cluster-{r['cluster']}" and Image.open(saved).size == (150, 150)


def test_pair_photo_gives_both_faces_numbered_from_the_largest(folder, capsys):
    photos, _ = folder
    code, records = run(["verify-face", "cluster", photos / "pair.png", photos / "missing.png", *FAST], capsys)
    assert code == 1  # the missing file is an error record
    faces = [r for r in records if "error" not in r]
    assert sorted(r["face"] for r in faces) == [1, 2] and faces[0]["cluster"] != faces[1]["cluster"]
    assert all(0 <= v <= 520 for r in faces for v in r["box"])
    assert records[-1]["error"]["type"] == "MissingSource"


def test_chinese_whispers_labels_each_connected_clique_once():
    """Two cliques and a lone node (every node its own neighbour, as dlib's graph): three clusters, numbered in
    order of first appearance."""
    cliques = [[0, 2, 4], [1, 3], [5]]
    adjacency = [np.array(next(c for c in cliques if n in c)) for n in range(6)]
    assert chinese_whispers(adjacency) == [0, 1, 0, 1, 0, 2]
