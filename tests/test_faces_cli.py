"""dlib's face models through the shared pipeline: `detect` (default model) and `landmarks --model face5|face68`.

Parity of the models themselves with real dlib is tested in tests/faces/; these tests check the wiring:
the records carry exactly what the face API finds, in original pixels, and a photo with no face is a
record with no detections, not an error.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnntool.faces.api import FaceDetector, ShapePredictor


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    d = tmp_path_factory.mktemp("faces")
    Image.fromarray(skimage_data.astronaut()).save(d / "astronaut.png")
    Image.fromarray(skimage_data.coffee()).save(d / "coffee.png")  # a cup of coffee: no face
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return d


def cnntool(*args):
    proc = subprocess.run([sys.executable, "-m", "cnntool", *args, "--format", "jsonl"], capture_output=True,
                          text=True, timeout=600)
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


def test_detect_defaults_to_faces_and_reports_what_the_detector_finds(photos):
    proc, (astronaut, coffee) = cnntool("detect", str(photos / "astronaut.png"), str(photos / "coffee.png"))
    assert proc.returncode == 0, proc.stderr
    assert astronaut["model"] == "faces" and (astronaut["width"], astronaut["height"]) == (512, 512)
    expected = FaceDetector().detect(Image.open(photos / "astronaut.png"))
    assert len(expected) == 1 == len(astronaut["detections"])
    found = astronaut["detections"][0]
    assert found["label"] == "face" and found["box"] == expected[0].box
    assert found["score"] == pytest.approx(expected[0].score, abs=1e-4)
    assert coffee["detections"] == []


def test_landmarks_on_every_face_with_a_drawing(photos, tmp_path):
    proc, records = cnntool("landmarks", "--model", "face5", str(photos / "astronaut.png"), str(photos / "coffee.png"),
                            str(photos / "broken.jpg"), "--save", str(tmp_path))
    astronaut, coffee, broken = records
    assert proc.returncode == 1  # the broken file
    box = FaceDetector().detect(Image.open(photos / "astronaut.png"))[0].box
    expected = ShapePredictor("5").predict(Image.open(photos / "astronaut.png"), box)
    assert astronaut["points"] == expected and astronaut["box"] == box
    assert astronaut["point_names"][0] == "right_eye_outer" and len(astronaut["faces"]) == 1
    assert coffee["points"] == [] and coffee["faces"] == []
    assert "error" in broken
    drawn = np.asarray(Image.open(astronaut["saved"]).convert("RGB")).astype(int)
    assert (np.abs(drawn - np.asarray(Image.open(photos / "astronaut.png"))).sum(axis=2) > 0).any()


def test_face68_gives_68_named_points(photos):
    proc, (astronaut,) = cnntool("landmarks", "--model", "face68", str(photos / "astronaut.png"))
    assert proc.returncode == 0
    assert len(astronaut["points"]) == 68 == len(astronaut["point_names"])
    assert astronaut["point_names"][:2] == ["jaw_1", "jaw_2"] and astronaut["point_names"][-1] == "inner_lip_8"
    # The jaw runs from one side of the face box to the other.
    x1, _, x2, _ = astronaut["box"]
    assert astronaut["points"][0][0] < (x1 + x2) / 2 < astronaut["points"][16][0]
