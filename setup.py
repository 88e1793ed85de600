"""The one compiled part: dlib's per-face stages as C loops (cnntool/faces/_native.c). It is optional: without a
C compiler the install goes on and cnntool computes the same bytes with numpy, more slowly."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "cnntool.faces._native", ["cnntool/faces/_native.c"], optional=True,
    # No fused multiply-adds (aarch64 compilers contract by default): the outputs must be dlib's to the bit.
    extra_compile_args=["-O3", "-ffp-contract=off"],
)])
