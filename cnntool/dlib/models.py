"""Locate dlib's model files and load them through the safetensors cache."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from .cache import load_or_convert
from .dnn import DnnFile, read_dnn
from .layers import Layer
from .shape_predictor import ShapePredictorData, read_shape_predictor

# The model files shipped by the PyPI package face-recognition-models (CC0).
FILES = {
    "detector": "mmod_human_face_detector.dat",
    "embedding": "dlib_face_recognition_resnet_model_v1.dat",
    "face5": "shape_predictor_5_face_landmarks.dat",
    "face68": "shape_predictor_68_face_landmarks.dat",
}


def model_path(key: str) -> Path:
    """Path of a face-recognition-models file. The package is located, not imported: its __init__ needs
    pkg_resources, which recent setuptools no longer ships."""
    if key not in FILES:
        raise KeyError(f"unknown dlib model {key!r}; known: {', '.join(FILES)}")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dlib face models need the package face-recognition-models "
                                "(pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / FILES[key]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the face-recognition-models installation")
    return path


def _convert_dnn(path: Path):
    net = read_dnn(path)
    arrays = {f"{i}.{k}": v for i, layer in enumerate(net.layers) for k, v in layer.arrays.items()}
    meta = {"loss": net.loss, "input": net.input,
            "layers": [{"name": l.name, "kind": l.kind, "attrs": l.attrs} for l in net.layers]}
    return arrays, json.loads(json.dumps(meta))


def load_dnn(path) -> DnnFile:
    arrays, meta = load_or_convert(path, _convert_dnn)
    layers = []
    for i, spec in enumerate(meta["layers"]):
        own = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.split(".", 1)[0] == str(i)}
        layers.append(Layer(spec["name"], spec["kind"], spec["attrs"], own))
    return DnnFile(loss=meta["loss"], input=meta["input"], layers=layers)


def load_shape_predictor(path) -> ShapePredictorData:
    arrays, _ = load_or_convert(path, lambda p: (read_shape_predictor(p).arrays(), {}))
    return ShapePredictorData(**arrays)
