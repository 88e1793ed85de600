import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def digit_png(tmp_path_factory):
    """A real handwritten digit (a 7 from OpenCV's sheet) as a PNG file."""
    from cnntool.data.builtin import load_opencv_digits

    images, labels = load_opencv_digits()
    path = tmp_path_factory.mktemp("digits") / "seven.png"
    Image.fromarray(images[np.flatnonzero(labels == 7)[-1]]).save(path)
    return str(path)
