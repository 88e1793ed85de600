"""dlib's face models through the shared pipeline: `detect` (default model) and `landmarks --model face5|face68`.

Parity of the models themselves with real dlib is tested in tests/faces/; these tests check the wiring
against the same recorded dlib outputs (tests/fixtures/dlib): the records carry what dlib finds, in original
pixels, with the box clipped to the image and dlib's own box beside it, the upsampling used (automatic or
--upsample), and a photo with no face is a record with no detections, not an error.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dlib"
DLIB = {r["name"]: r for r in json.loads((FIXTURES / "dlib_outputs.json").read_text())["photos"]}
_spec = importlib.util.spec_from_file_location("dlib_fixture_photos", FIXTURES / "photos.py")
fixture_photos = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fixture_photos  # dataclasses look their module up there
_spec.loader.exec_module(fixture_photos)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    for name in ("astronaut", "coffee", "lena_right_edge"):
        try:
            Image.fromarray(fixture_photos.load(name)).save(d / f"{name}.png")
        except fixture_photos.MissingPhoto as e:
            pytest.skip(str(e))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return d


def cnntool(*args):
    proc = subprocess.run([sys.executable, "-m", "cnntool", *args, "--format", "jsonl"], capture_output=True,
                          text=True, timeout=600)
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


def box(rect):  # dlib's inclusive rectangle → [x1, y1, x2, y2]
    return [rect[0], rect[1], rect[2] + 1, rect[3] + 1]


def test_detect_defaults_to_faces_upsampled_once_on_a_small_photo_as_dlib_finds(photos):
    proc, (astronaut, coffee) = cnntool("detect", str(photos / "astronaut.png"), str(photos / "coffee.png"))
    assert proc.returncode == 0, proc.stderr
    assert astronaut["model"] == "faces" and (astronaut["width"], astronaut["height"]) == (512, 512)
    (want,) = DLIB["astronaut_up1"]["faces"]  # 512 × 512 is under 2 MP: upsampled once
    (found,) = astronaut["detections"]
    assert astronaut["upsample"] == 1 and found["label"] == "face"
    assert found["box"] == found["box_unclipped"] == box(want["rect"])
    assert found["score"] == pytest.approx(want["score"], abs=1e-4)
    assert coffee["detections"] == [] and coffee["upsample"] == 1


def test_a_face_past_the_border_keeps_dlibs_box_beside_the_clipped_one(photos):
    proc, (lena,) = cnntool("detect", str(photos / "lena_right_edge.png"), "--upsample", "0")
    assert proc.returncode == 0, proc.stderr
    (want,) = DLIB["lena_right_edge"]["faces"]
    (found,) = lena["detections"]
    assert lena["upsample"] == 0 and found["box_unclipped"] == box(want["rect"])
    assert want["rect"][2] >= lena["width"] == 300  # dlib's box reaches past the right border
    assert found["box"] == [*box(want["rect"])[:2], 300, box(want["rect"])[3]]


def test_upsample_is_refused_by_models_that_have_none(photos):
    proc, records = cnntool("detect", "--model", "yolo-digits", "--upsample", "1", str(photos / "astronaut.png"))
    assert proc.returncode == 2 and records == []
    assert proc.stderr.strip().splitlines()[-1].endswith("--upsample applies to dlib's face models only (faces, "
                                                         "face5, face68)")


def test_landmarks_on_every_face_with_a_drawing(photos, tmp_path):
    proc, records = cnntool("landmarks", "--model", "face5", "--upsample", "0", str(photos / "astronaut.png"),
                            str(photos / "coffee.png"), str(photos / "broken.jpg"), "--save", str(tmp_path))
    astronaut, coffee, broken = records
    assert proc.returncode == 1  # the broken file
    (want,) = DLIB["astronaut"]["faces"]  # upsample 0
    assert astronaut["upsample"] == 0 and astronaut["points"] == want["points5"]
    assert astronaut["box"] == box(want["rect"]) == astronaut["faces"][0]["box_unclipped"]
    assert astronaut["point_names"][0] == "right_eye_outer" and len(astronaut["faces"]) == 1
    assert coffee["points"] == [] and coffee["faces"] == []
    assert "error" in broken
    drawn = np.asarray(Image.open(astronaut["saved"]).convert("RGB")).astype(int)
    assert (np.abs(drawn - np.asarray(Image.open(photos / "astronaut.png"))).sum(axis=2) > 0).any()


def test_face68_gives_dlibs_68_named_points(photos):
    proc, (astronaut,) = cnntool("landmarks", "--model", "face68", str(photos / "astronaut.png"))
    assert proc.returncode == 0
    assert astronaut["points"] == DLIB["astronaut_up1"]["faces"][0]["points68"]
    assert len(astronaut["point_names"]) == 68
    assert astronaut["point_names"][:2] == ["jaw_1", "jaw_2"] and astronaut["point_names"][-1] == "inner_lip_8"
