"""The command line's manners: inputs are never written over, output shapes are fixed and documented, progress
is shown, and the basics a user expects (--version, completion, model cards, URL inputs, export) work."""

import functools
import hashlib
import http.server
import io
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnntool.cli import main

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "records.schema.json"


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args)
    out = capsys.readouterr()
    return stop.value.code, out.out, out.err


def md5s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def photos(tmp_path):
    """A folder of inputs: scikit-image's astronaut (a face), a digit, and a file already named like an output."""
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image supplies the test photo")
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.jpg")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.png")  # what --save would name its output
    digit = Path(__file__).resolve().parent.parent / "examples" / "digits" / "digit7-0-sheet3897.png"
    (folder / "seven.png").write_bytes(digit.read_bytes())
    return folder


# --- 1. never write over an input -------------------------------------------------------------------------

def test_outputs_pointed_at_the_inputs_folder_leave_every_input_as_it_was(photos, capsys):
    before = md5s(photos)
    code, out, _ = run_cli(["detect", str(photos), "--save", str(photos), "--format", "jsonl", "-q"], capsys)
    assert code == 0
    code, _, _ = run_cli(["landmarks", str(photos / "seven.png"), "--rectify", str(photos), "--save", str(photos),
                          "-q"], capsys)
    assert code == 0
    after = md5s(photos)
    assert {name: after[name] for name in before} == before
    saved = {json.loads(line)["source"].rsplit("/", 1)[1]: json.loads(line)["saved"] for line in out.splitlines()}
    # astronaut.png existed (an input), so astronaut.jpg's drawing took the next free name
    assert saved["astronaut.jpg"].endswith("astronaut-2.png") and Path(saved["astronaut.jpg"]).is_file()


def test_training_onto_its_own_init_weights_is_refused_before_any_work(tmp_path, capsys):
    from cnntool import weights

    init = tmp_path / "mine.safetensors"
    init.write_bytes((weights.weights_dir() / "lenet5-digits.safetensors").read_bytes())
    before = hashlib.md5(init.read_bytes()).hexdigest()
    code, _, err = run_cli(["train", "classify", "--data", "digits", "--model", "lenet5-relu", "--init", str(init),
                            "--out", str(init)], capsys)
    assert code == 2 and "never writes over an input" in err and len(err.strip().splitlines()) == 1
    assert hashlib.md5(init.read_bytes()).hexdigest() == before


def test_an_ensemble_onto_one_of_its_members_is_refused(tmp_path, capsys):
    from cnntool import weights

    member = tmp_path / "m.safetensors"
    member.write_bytes((weights.weights_dir() / "lenet5-digits.safetensors").read_bytes())
    code, _, err = run_cli(["ensemble", str(member), str(member), "--data", "digits", "--out", str(member)], capsys)
    assert code == 2 and "never writes over an input" in err


def test_an_image_directory_never_replaces_a_file(tmp_path):
    from cnntool.folders import ImageDirectory

    out = ImageDirectory(tmp_path, "--save")
    (tmp_path / "a.png").write_bytes(b"the user's")
    first, second = out.write("x/a.jpg", Image.new("RGB", (2, 2))), out.write("y/a.jpg", Image.new("RGB", (2, 2)))
    assert (first.name, second.name) == ("a-2.png", "a-3.png") and (tmp_path / "a.png").read_bytes() == b"the user's"
    assert not list(tmp_path.glob(".*.tmp"))


# --- 3. fixed output shapes, documented ------------------------------------------------------------------------

def test_every_task_writes_records_the_schema_documents(photos, tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    records = []
    for command in (["classify"], ["localize"], ["landmarks"], ["landmarks", "--model", "face5"], ["detect"],
                    ["detect", "--model", "yolo-digits"]):
        code, out, _ = run_cli([*command, str(photos / "seven.png"), str(photos / "astronaut.jpg"), str(broken),
                                "--format", "jsonl", "-q"], capsys)
        assert code == 1
        records += [json.loads(line) for line in out.splitlines()]
    code, out, _ = run_cli(["verify-face", str(photos / "astronaut.jpg"), str(photos / "astronaut.png"),
                            str(photos / "seven.png"), "--format", "jsonl", "-q"], capsys)
    records += [json.loads(line) for line in out.splitlines()]
    assert {r["task"] for r in records} == {"classify", "localize", "landmarks", "detect", "verify-face"}
    assert any("error" in r for r in records) and any("faces" in r for r in records)
    for record in records:
        errors = [e.message for e in validator.iter_errors(record)]
        assert errors == [], (record, errors)


def test_detect_csv_is_one_row_per_detection_whatever_comes_first(photos, capsys):
    import csv

    code, out, _ = run_cli(["detect", str(photos / "seven.png"), str(photos / "astronaut.jpg"), "--format", "csv",
                            "-q"], capsys)
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and header[:5] == ["source", "task", "model", "width", "height"] and "label" in header
    assert rows[0][0].endswith("seven.png") and rows[0][header.index("label")] == ""  # no face: one row still
    assert all(row[header.index("label")] == "face" for row in rows[1:]) and len(rows) >= 2


# --- 4. progress ---------------------------------------------------------------------------------------------

def test_progress_off_a_terminal_is_a_periodic_line_and_quiet_silences_it(photos, capsys, monkeypatch):
    from cnntool.engine import report

    monkeypatch.setattr(report, "STATUS_EVERY_S", 0.0)
    code, _, err = run_cli(["classify", str(photos), "--format", "jsonl"], capsys)
    assert code == 0 and "cnntool: 3/3 images" in err and "img/s" in err
    code, _, err = run_cli(["classify", str(photos), "--format", "jsonl", "-q"], capsys)
    assert code == 0 and err == ""


# --- 5. the basics -------------------------------------------------------------------------------------------

def test_version_and_completion(capsys):
    from cnntool import version

    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"cnntool {version()}"
    code, out, _ = run_cli(["--show-completion", "bash"], capsys)
    assert code == 0 and "_CNNTOOL_COMPLETE" in out


def test_models_lists_the_main_figure_and_whether_each_runs_offline(capsys):
    code, out, _ = run_cli(["models", "--format", "jsonl"], capsys)
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert code == 0 and rows["lenet5-digits"]["offline"] == "yes" and rows["resnet18"]["offline"] == "download"
    assert rows["lenet5"]["offline"] == "train" and rows["faces"]["offline"] == "yes"
    assert rows["lenet5-digits"]["main_figure"]["accuracy"] >= 0.99


def test_a_model_card_says_what_the_model_knows_and_how_it_was_made(capsys):
    code, out, _ = run_cli(["models", "localizer-digits"], capsys)
    assert code == 0 and out.startswith("# localizer-digits (localize, the default)")
    assert "offline: yes" in out and "cnntool ensemble" in out and "Known failures" in out
    code, _, err = run_cli(["models", "no-such-model"], capsys)
    assert code == 2 and "valid:" in err


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(photos):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Files, directory=str(photos)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_url_inputs_are_downloaded_with_a_size_cap_and_a_timeout(server, capsys, monkeypatch):
    from cnntool import sources

    code, out, _ = run_cli(["classify", f"{server}/seven.png", f"{server}/missing.png", "--format", "jsonl", "-k", "1",
                            "-q"], capsys)
    good, missing = map(json.loads, out.splitlines())
    assert code == 1 and good["predictions"][0]["label"] == "7" and good["source"] == f"{server}/seven.png"
    assert "HTTP 404" in missing["error"]["message"]
    monkeypatch.setattr(sources, "MAX_DOWNLOAD_BYTES", 1000)
    with pytest.raises(sources.DownloadError, match="byte limit"):
        sources.fetch(f"{server}/astronaut.png", limit=1000)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers
    with pytest.raises(sources.DownloadError, match="download failed"):
        sources.fetch(f"http://127.0.0.1:{silent.getsockname()[1]}/x.png", timeout=0.5)
    silent.close()


# --- 6. export ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, task", [("lenet5-digits", "classify"), ("landmarker-corners", "landmarks")])
def test_an_onnx_export_gives_what_pytorch_gives(name, task, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from cnntool.loader import load_model

    out = tmp_path / f"{name}.onnx"
    code, _, err = run_cli(["export", name, "--out", str(out)], capsys)
    assert code == 0, err
    described = json.loads(out.with_name(out.name + ".json").read_text())
    assert described["task"] == task and described["input"]["size"] == list(load_model(name, None, task=task).input.size)
    loaded = load_model(name, None, task=task)
    x = torch.randn(3, loaded.input.channels, *loaded.input.size)
    session = ort.InferenceSession(str(out))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - loaded.module(x).numpy()).max() <= 1e-4


def test_torchscript_export_and_what_cannot_be_exported(tmp_path, capsys):
    out = tmp_path / "lenet.pt"
    assert run_cli(["export", "lenet5-digits", "--format", "torchscript", "--out", str(out), "-q"], capsys)[0] == 0
    scripted = torch.jit.load(str(out))
    assert scripted(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    code, _, err = run_cli(["export", "faces", "--out", str(tmp_path / "faces.onnx")], capsys)
    assert code == 2 and "image pyramid" in err
