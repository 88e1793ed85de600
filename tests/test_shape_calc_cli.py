"""`cnntool shape-calc` end to end: answers, formats, exit codes, and no torch at start-up."""

import importlib.util
import json
import re
import shlex
import subprocess
import sys

import pytest

from cnntool.cli import main
from cnntool.models import catalog
from cnntool.registry import InputSpec, ModelSpec
from cnntool.shapecalc.layers import describe

TINY = "test-shape-calc-tiny"
NO_LAYERS = "test-shape-calc-opaque"


@pytest.fixture(scope="module", autouse=True)
def two_models_of_our_own():
    """Two models of our own, so --model is tested whatever the catalog holds; gone again afterwards, so
    that later tests see the real registry."""
    input_spec = InputSpec(size=(28, 28), channels=1, mean=(0.5,), std=(0.5,))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalog.REGISTRY, "_specs", dict(catalog.REGISTRY._specs))
        for name, layers in ((TINY, "conv3:4 relu max2 fc:10"), (NO_LAYERS, None)):
            catalog.register(ModelSpec(name=name, task="classify", builder="tests.nowhere:build",
                                       input=input_spec, layers=layers))
        yield


def shape_calc(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["shape-calc", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_one_layer_prints_the_formula_filled_in(capsys):
    code, out, err = shape_calc(capsys, "--n", "64", "--f", "3", "--s", "2")
    assert code == 0
    assert out.splitlines()[0] == "⌊(64 + 2·0 − 3)/2⌋ + 1 = 31"
    assert "not divisible" in err  # (64 − 3) is odd: an edge pixel is dropped


def test_divisible_layer_has_no_warning(capsys):
    code, out, err = shape_calc(capsys, "--n", "6", "--f", "3")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "6 + 2·0 − 3 + 1 = 4"


def test_quiet_silences_warnings(capsys):
    assert shape_calc(capsys, "--n", "64", "--f", "3", "--s", "2", "-q")[2] == ""


def test_rectangular_input_with_channels_as_json(capsys):
    code, out, _ = shape_calc(capsys, "--n", "64x48", "--f", "3", "--p", "same", "--c-in", "3", "--c-out", "16",
                              "--format", "json")
    answer = json.loads(out)
    assert code == 0
    assert answer["output"] == [64, 48] and answer["channels"] == 16
    assert answer["params"] == 3 * 3 * 3 * 16 + 16


@pytest.mark.parametrize("args, output", [
    (["--n", "7", "--f", "2", "--pool", "max", "--ceil"], [4, 4]),
    (["--n", "32", "--f", "4", "--s", "2", "--p", "1", "--transposed"], [64, 64]),
    (["--n", "100", "--dims", "1", "--f", "3", "--d", "2"], [96]),
    (["--n", "16x64x64", "--f", "3", "--p", "1"], [16, 64, 64]),
    (["--n", "64", "--f", "4", "--s", "2", "--p", "same"], [32, 32]),
])
def test_layer_kinds(capsys, args, output):
    code, out, _ = shape_calc(capsys, *args, "--format", "json")
    assert code == 0 and json.loads(out)["output"] == output


def test_chain_table_has_every_layer_and_totals(capsys):
    code, out, _ = shape_calc(capsys, "--n", "32", "--c-in", "1", "--layers",
                              "conv5:6 tanh avg2 conv5:16 tanh avg2 fc:120 fc:84 fc:10")
    assert code == 0
    for text in ("28×28×6", "5×5×16", "61,706", "total", "RF", "jump"):
        assert text in out


def test_chain_json(capsys):
    code, out, _ = shape_calc(capsys, "--n", "8", "--c-in", "2", "-l", "res(conv3p1:2) cat(conv1:3 | max3s1p1)",
                              "--format", "json")
    answer = json.loads(out)
    assert code == 0
    assert answer["output"] == [5, 8, 8]
    assert answer["total_params"] == 3 * 3 * 2 * 2 + 2 + 2 * 3 + 3
    assert [row["depth"] for row in answer["layers"]] == [1, 0, 1, 1, 0]


def test_model_by_name(capsys):
    code, out, _ = shape_calc(capsys, "--model", TINY, "--format", "json")
    answer = json.loads(out)
    assert code == 0
    assert answer["input"] == [1, 28, 28] and answer["output"] == [10]
    assert answer["total_params"] == describe("conv3:4 relu max2 fc:10", (1, 28, 28)).total_params


def test_model_that_cannot_be_traced_is_a_one_line_error(capsys):
    code, out, err = shape_calc(capsys, "--model", NO_LAYERS)  # its builder names a module that does not exist
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"cnntool: error: cannot trace model '{NO_LAYERS}'")


@pytest.mark.parametrize("args, answer", [
    (["--n", "64", "--f", "5", "--out", "64", "--solve", "p"], "p = 2"),
    (["--f", "3", "--s", "2", "--out", "31", "--solve", "n"], "n ∈ {63, 64}"),
    (["--n", "64", "--out", "62", "--solve", "f"], "f = 3"),
    (["--n", "64", "--f", "3", "--out", "1", "--solve", "s"], "s ≥ 62"),
    (["--n", "64", "--f", "4", "--out", "64", "--solve", "p"], "no p gives 64"),
])
def test_solve(capsys, args, answer):
    code, out, _ = shape_calc(capsys, *args)
    assert code == 0 and out.startswith(answer)


@pytest.mark.parametrize("args", [
    ["--n", "-5", "--f", "3"],
    ["--n", "64", "--f", "3", "--s", "0"],
    ["--n", "4", "--f", "7"],
    ["--n", "64"],
    ["--n", "64x", "--f", "3"],
    ["--n", "64", "--f", "3", "--p", "half"],
    ["--n", "10", "--f", "3", "--pool", "max", "--p", "2"],
    ["--n", "32", "--layers", "conv3q:5"],
    ["--n", "32", "--layers", "res(conv3:4"],
    ["--n", "8", "--layers", "conv3:4 res(conv3:4)"],
    ["--n", "64", "--f", "3", "--c-out", "8"],
    ["--model", "no-such-model"],
    ["--model", TINY, "--layers", "relu"],
    ["--model", TINY, "--f", "3"],
    ["--n", "64", "--f", "3", "--solve", "p"],
    ["--n", "64", "--f", "3", "--out", "3"],
    ["--model", "yolo-digits", "--c-in", "1"],
    ["--model", "yolo-digits", "--n", "16x96x96"],
    ["--cost", "--n", "28", "--c-in", "192", "--f", "5"],
    ["--cost", "--n", "28", "--c-in", "192", "--f", "5", "--c-out", "32", "--bottleneck", "0"],
    ["--cost", "--n", "28", "--c-in", "192", "--f", "5", "--c-out", "32", "--pool", "max"],
    ["--cost", "--model", TINY],
    ["--n", "28", "--f", "5", "--bottleneck", "16"],
    ["--input", "1 2; 3 4"],
    ["--input", "1 2; 3", "--kernel", "1"],
    ["--input", "1 x; 3 4", "--kernel", "1"],
    ["--input", "1 2; 3 4", "--kernel", "1", "--pool", "max", "--f", "1"],
    ["--input", "1 2; 3 4", "--kernel", "1", "--f", "1"],
    ["--input", "1 2; 3 4", "--kernel", "1 1 1; 1 1 1; 1 1 1"],
    ["--input", "1 2; 3 4", "--pool", "l2", "--f", "2"],
    ["--input", "1 2; 3 4", "--pool", "max", "--f", "2", "--error", "1 2"],
    ["--input", "1 2; 3 4", "--kernel", "1", "--n", "4"],
    ["--input", "@/no/such/file", "--kernel", "1"],
    ["--n", "4", "--f", "2", "--error", "1"],
])
def test_nonsense_is_one_line_on_stderr_and_exit_2(capsys, args):
    code, out, err = shape_calc(capsys, *args)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("cnntool: error: ")


def test_help_documents_the_grammar_with_examples_that_parse(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = shape_calc(capsys, "--help")
    assert code == 0
    assert "Example: cnntool shape-calc" in out and "res( body | shortcut )" in out
    examples = re.search(r"e\.g\.(.*?)Example", out, re.S).group(1)
    specs = [s.strip(" │") for line in examples.splitlines() for s in re.split(r"\s{3,}", line) if s.strip(" │")]
    assert len(specs) >= 6
    for spec in specs:
        describe(spec, (3, 64, 64))


def test_no_torch_at_startup():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnntool", "shape-calc", "--n", "64",
                             "--f", "3", "--s", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "= 31" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")]
    assert imported and not [name for name in imported if name == "torch" or name.startswith("torch.")]


# --- the value calculator, the cost view, and models traced through torch ------------------------------------

def test_values_read_a_matrix_from_a_file(capsys, tmp_path):
    image = tmp_path / "image.txt"
    image.write_text("10 10 10 0 0 0\n" * 6)
    code, out, _ = shape_calc(capsys, "--input", f"@{image}", "--kernel", "1 0 -1; 1 0 -1; 1 0 -1", "--format", "json")
    assert code == 0 and json.loads(out)["output"] == [[0, 30, 30, 0]] * 4


def test_values_text_shows_the_size_formula_and_the_matrices(capsys):
    code, out, _ = shape_calc(capsys, "--input", "1 3 2 1; 2 9 1 1; 1 3 2 3; 5 6 1 2", "--pool", "max", "--f", "2",
                              "--error", "1 3; 2 4")
    assert code == 0
    assert out.splitlines() == [
        "max pooling 2×2 on 4×4 → 2×2 (⌊(4 + 2·0 − 2)/2⌋ + 1 = 2):",
        "  9 2", "  6 3",
        "input error ∂L/∂A (each error to its window's maximum):",
        "  0 0 3 0", "  0 1 0 0", "  0 0 0 4", "  0 2 0 0",
    ]


def test_cost_without_a_bottleneck_is_one_line(capsys):
    code, out, _ = shape_calc(capsys, "--cost", "--n", "28", "--c-in", "192", "--f", "5", "--c-out", "32")
    assert code == 0
    assert out == "conv5psame:32 on 28×28×192 → 28×28×32: 28·28·32 · 5·5·192 = 120,422,400 multiplications\n"


def test_cost_follows_stride_and_padding(capsys):
    code, out, _ = shape_calc(capsys, "--cost", "--n", "7", "--c-in", "3", "--f", "3", "--s", "2", "--p", "0",
                              "--c-out", "4", "--format", "json")
    answer = json.loads(out)
    assert code == 0 and answer["layer"]["output"] == [4, 3, 3]
    assert answer["macs"] == describe("conv3s2:4", (3, 7, 7)).total_macs == 3 * 3 * 4 * 3 * 3 * 3


def help_examples(capsys, monkeypatch) -> list[list[str]]:
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = shape_calc(capsys, "--help")
    assert code == 0
    lines = [line.strip(" │") for line in out.splitlines() if "Example: cnntool shape-calc" in line]
    return [shlex.split(line.split("cnntool shape-calc", 1)[1]) for line in lines]


def test_every_help_example_runs(capsys, monkeypatch):
    examples = help_examples(capsys, monkeypatch)
    assert len(examples) >= 8 and any("--cost" in e for e in examples) and any("--error" in e for e in examples)
    for example in examples:
        code, out, err = shape_calc(capsys, *example)
        assert code == 0 and out, (example, err)


def dlib_files_missing() -> bool:
    return importlib.util.find_spec("face_recognition_models") is None


# Traced at their own size these run for seconds on two cores: ResNet-50-FPN detectors resize to 800 px
# inside, and dlib's face detector runs its pyramid over the 640×480 stand-in photo upsampled twice.
SLOW_TO_TRACE = {"fasterrcnn-resnet50", "retinanet-resnet50", "fcos-resnet50", "faces", "face5", "face68"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_TRACE else n
                                  for n in catalog.names()])
def test_every_registered_model_has_an_answer(capsys, name):
    spec = catalog.get(name)
    if spec.weights == "external:dlib" and dlib_files_missing():
        pytest.skip("dlib's model files come with face-recognition-models, which is not installed")
    code, out, err = shape_calc(capsys, "--model", name, "--format", "json", "-q")
    answer = json.loads(out)
    assert code == 0, err
    assert answer["total_params"] > 0 and answer["layers"]
    if spec.input.resize == "none":  # a model that takes photos at their own size says what stood in
        assert "640×480" in answer["note"]


def test_a_photo_size_model_is_traced_on_the_size_given(capsys):
    if dlib_files_missing():
        pytest.skip("dlib's model files come with face-recognition-models, which is not installed")
    code, out, _ = shape_calc(capsys, "--model", "faces", "--n", "120x160", "--format", "json")
    answer = json.loads(out)
    assert code == 0 and answer["traced"] and answer["input"] == [3, 120, 160]
    assert answer["layers"][0]["layer"].startswith("Conv2d")


@pytest.mark.parametrize("name", ["lenet5", "alexnet-lecture", "window-digits", "resnet-small"])
def test_tracing_agrees_with_the_chain_description(name):
    """Two independent paths: hooks on the real module, and the layer string's arithmetic."""
    from cnntool.shapecalc.trace import trace

    spec = catalog.get(name)
    shape = (spec.input.channels, *spec.input.size)
    traced, chain = trace(spec, shape), describe(spec.layers, shape)
    assert (traced.total_params, traced.total_macs) == (chain.total_params, chain.total_macs)
    assert [layer.outputs[0][1:] for layer in traced.layers if layer.macs] == \
        [row.output_shape for row in chain.rows if row.macs]


def test_traced_parameters_are_the_modules_own():
    from cnntool.shapecalc.trace import trace

    spec = catalog.get("localizer-digits")
    traced = trace(spec, (3, *spec.input.size))
    assert traced.total_params == sum(p.numel() for p in spec.build().parameters())
    assert traced.total_params == sum(layer.params for layer in traced.layers)


def test_a_shared_module_counts_its_parameters_once(capsys):
    code, out, _ = shape_calc(capsys, "--model", "conv-sliding-windows-digits", "--format", "json")
    answer = json.loads(out)
    runs = [layer for layer in answer["layers"] if layer["module"] == "scorer.fc1"]
    assert code == 0 and len(runs) > 1  # once per pyramid level
    assert [layer["run"] for layer in runs] == list(range(1, len(runs) + 1))
    assert runs[0]["params"] > 0 and all(layer["params"] == 0 for layer in runs[1:])
    # The window classifier's fc layers stay in the model but its convolutional copies run instead.
    assert answer["params_not_run"] == (64 * 4 * 4 + 1) * 128 + (128 + 1) * 11
    assert answer["total_params"] == sum(layer["params"] for layer in answer["layers"]) + answer["params_not_run"]


def test_torchvision_detectors_show_their_anchor_grids(capsys):
    code, out, _ = shape_calc(capsys, "--model", "ssdlite320", "--format", "json", "-q")
    grids = json.loads(out)["anchor_grids"]
    assert code == 0 and [(g["rows"], g["cols"]) for g in grids][:2] == [(20, 20), (10, 10)]  # 320 / 16, 320 / 32
    assert sum(g["volume"] for g in grids) == sum(g["rows"] * g["cols"] * g["anchors"] for g in grids)


@pytest.mark.parametrize("args, answer", [
    (["--cost", "--n", "28", "--c-in", "192", "--f", "5", "--c-out", "32", "--bottleneck", "16"], "12,443,648"),
    (["--input", "1 2 3; 4 5 6; 7 8 9", "--kernel", "1 0; 0 -1", "--error", "1 2; 3 4"], "= 10"),
])
def test_cost_and_values_start_without_torch(args, answer):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnntool", "shape-calc", *args],
                            capture_output=True, text=True, timeout=60)
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time")]
    assert result.returncode == 0 and answer in result.stdout
    assert imported and "torch" not in imported
