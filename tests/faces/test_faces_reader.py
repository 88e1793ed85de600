"""dlib serialization reader: primitives against an independent encoder, real files against known facts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnntool.dlib import DlibFormatError, Stream, load_dnn, load_shape_predictor, model_path, read_dnn
from cnntool.dlib.cache import cache_dir, load_or_convert
from cnntool.dlib.tokens import decode_ints, ints_to_floats, token_starts


def enc_int(v: int) -> bytes:
    """dlib's integer encoding, written from its description: control byte (size | 0x80 if negative) + LE magnitude."""
    mag = abs(v)
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little") if mag else b""
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def enc_float(x: float) -> bytes:
    m, e = np.frexp(np.float32(x))
    mantissa = int(np.ldexp(m, 24))
    return enc_int(mantissa) + enc_int(int(e) - 24)


ints = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)


@given(st.lists(ints, max_size=50))
def test_stream_ints_roundtrip(values):
    s = Stream(b"".join(enc_int(v) for v in values))
    assert [s.int() for _ in values] == values
    assert s.at_end()


@settings(max_examples=50)
@given(st.lists(ints, min_size=1, max_size=300))
def test_vectorized_decoder_matches_sequential(values):
    buf = np.frombuffer(b"".join(enc_int(v) for v in values), np.uint8)
    starts = token_starts(buf)
    assert decode_ints(buf, starts).tolist() == values


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=30))
def test_floats(values):
    data = b"".join(enc_float(v) for v in values)
    s = Stream(data)
    assert [s.float() for _ in values] == [float(np.float32(v)) for v in values]
    buf = np.frombuffer(data, np.uint8)
    pairs = decode_ints(buf, token_starts(buf)).reshape(-1, 2)
    np.testing.assert_array_equal(ints_to_floats(pairs[:, 0], pairs[:, 1]), np.float32(values))


def test_strings_bools_tensors():
    t = np.arange(6, dtype="<f4")
    data = enc_int(5) + b"con_4" + b"1" + b"0" + enc_int(2) + b"".join(enc_int(d) for d in (1, 2, 3, 1)) + t.tobytes()
    s = Stream(data)
    assert s.string() == "con_4" and s.bool() is True and s.bool() is False
    np.testing.assert_array_equal(s.tensor(), t.reshape(1, 2, 3, 1))
    assert s.at_end()


def test_bad_bytes_are_clear_errors():
    with pytest.raises(DlibFormatError):
        Stream(b"\x31").int()  # 0x31 has bits in 0x70: not an integer control byte
    with pytest.raises(DlibFormatError):
        Stream(b"\x04\x01").int()  # truncated


def test_detector_file_facts():
    net = read_dnn(model_path("detector"))
    assert net.loss["detector_windows"][0]["width"] == 80
    assert net.loss["overlaps_nms"]["iou_thresh"] == pytest.approx(0.338, abs=1e-3)
    convs = [l for l in net.layers if l.kind == "con"]
    assert [l.attrs["out_channels"] for l in convs] == [16, 32, 32, 45, 45, 45, 1]
    learned = sum(v.size for l in net.layers for k, v in l.arrays.items() if not k.startswith("running"))
    assert learned == 181_141


def test_embedding_file_facts():
    net = load_dnn(model_path("embedding"))
    assert net.input["nr"] == net.input["nc"] == 150
    assert sum(l.kind == "con" for l in net.layers) == 29
    assert sum(v.size for l in net.layers for v in l.arrays.values()) == 5_614_592
    assert net.layers[-1].kind == "fc" and "bias" not in net.layers[-1].arrays
    assert net.loss["dist_thresh"] == pytest.approx(0.6)


def test_shape_predictor_5_layout():
    d = load_shape_predictor(model_path("face5"))
    assert d.initial_shape.shape == (5, 2)
    assert d.splits.shape == (15, 500, 15, 2) and d.leaves.shape == (15, 500, 16, 5, 2)
    assert d.anchors.shape == (15, 800) and d.deltas.shape == (15, 800, 2)
    assert d.splits.max() < 800 and d.anchors.max() < 5


def test_cache_is_written_once_atomically(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNTOOL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    src = tmp_path / "model.dat"
    src.write_bytes(b"x")
    calls = []

    def convert(p):
        calls.append(p)
        return {"a": np.arange(3, dtype=np.float32)}, {"k": 1}

    for _ in range(2):
        arrays, meta = load_or_convert(src, convert)
        np.testing.assert_array_equal(arrays["a"], [0, 1, 2])
        assert meta == {"k": 1}
    assert len(calls) == 1
    files = list(cache_dir().iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # no temp files left behind
