"""`cnntool shape-calc` end to end: answers, formats, exit codes, and no torch at start-up."""

import json
import re
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


def test_model_without_layers_is_a_clear_error(capsys):
    code, _, err = shape_calc(capsys, "--model", NO_LAYERS)
    assert code == 2 and "no layer description" in err


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
