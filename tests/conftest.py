import numpy as np
import pytest
from PIL import Image

from cnntool.data.builtin import DataUnavailable


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test whose data are not on this machine (Debian's opencv-doc or dataset-fashion-mnist, which `.ci/run`
    installs) is skipped with the message that names the install command, not failed."""
    outcome = yield
    report = outcome.get_result()
    excinfo = call.excinfo
    if report.failed and excinfo is not None and excinfo.errisinstance(DataUnavailable):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {excinfo.value}")


@pytest.fixture(scope="session")
def digit_png(tmp_path_factory):
    """A real handwritten digit (a 7 from OpenCV's sheet) as a PNG file."""
    from cnntool.data.builtin import load_opencv_digits

    images, labels = load_opencv_digits()
    path = tmp_path_factory.mktemp("digits") / "seven.png"
    Image.fromarray(images[np.flatnonzero(labels == 7)[-1]]).save(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory):
    """A few generated localize scenes: 2 training, 12 validation, 6 held-out."""
    from cnntool.data import scenes

    root = tmp_path_factory.mktemp("scenes")
    scenes.write_dataset(root, {"train": 2, "val": 12, "test": 6}, seed=0, config=scenes.SceneConfig())
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`): its
    forwards are small, and on shared cores one thread beats two fighting for them; reductions repeat."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
