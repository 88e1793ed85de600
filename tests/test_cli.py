"""The command line as a user meets it: exit codes, error records in place, streams, pipes and Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from cnntool import weights

from cnntool.models import catalog

CNNTOOL = [sys.executable, "-m", "cnntool"]


def run(*args, stdin=None, env=None, timeout=120):
    return subprocess.run([*CNNTOOL, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def imports_torch(*args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnntool", *args], capture_output=True,
                          text=True, timeout=60)
    return any(line.rstrip().endswith("| torch") for line in proc.stderr.splitlines()), proc


def _command_paths():
    from typer.main import get_command

    from cnntool.cli import app

    for name, command in get_command(app).commands.items():
        yield [name]
        for sub in getattr(command, "commands", {}):
            yield [name, sub]


@pytest.mark.parametrize("args", [["--help"], ["models"], ["models", "--task", "classify"]]
                         + [[*path, "--help"] for path in _command_paths()], ids=" ".join)
def test_help_and_listing_never_import_torch(args):
    torch_imported, proc = imports_torch(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not torch_imported


def test_every_subcommand_help_has_an_example():
    from typer.main import get_command

    from cnntool.cli import app

    group = get_command(app)
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", None) or {name: command}
        for sub in subcommands.values():
            assert "Example:" in (sub.help or ""), f"{name} {sub.name} --help has no example line"


def test_models_lists_the_registry_as_json():
    proc = run("models", "--format", "json")
    rows = json.loads(proc.stdout)
    assert {row["name"] for row in rows} == set(catalog.names())
    assert proc.returncode == 0
    for row in rows:  # a fine-tune names the file it started from
        if "--init" in (row.get("command") or ""):
            assert len(row["init"]["sha256"]) == 64 and row["init"]["command"].startswith("cnntool train")


def test_the_readmes_first_command_reads_the_held_out_examples():
    """`cnntool classify examples/digits/`, as README.md runs it: 20 digits from the held-out split, two per
    class, named by their true label; the embedded LeNet-5 ensemble (99.3 % held-out) reads all of them, as the
    README says."""
    from cnntool.data.builtin import load_opencv_digits
    from cnntool.data.splits import stratified_split

    proc = run("classify", "examples/digits/", "--format", "jsonl")
    assert proc.returncode == 0
    read = {os.path.basename(r["source"]): r["predictions"][0]["label"] for r in _records(proc.stdout)}
    assert len(read) == 20
    wrong = {name: label for name, label in read.items() if label != name[len("digit")]}
    assert wrong == {}
    _, labels = load_opencv_digits()
    held_out = {int(i) for i in stratified_split(labels, 0.2, 0)[1]}
    assert all(int(name.split("sheet")[1][:4]) in held_out for name in read)


def test_the_example_digits_written_dark_on_light_are_read_the_same(tmp_path):
    """The embedded LeNet-5 was trained on white digits on black; the same held-out digits inverted (ink on
    paper) reach it the right way round."""
    for path in sorted(Path("examples/digits").glob("*.png")):
        ImageOps.invert(Image.open(path).convert("L")).save(tmp_path / path.name)
    proc = run("classify", "examples/digits/", str(tmp_path), "--format", "jsonl")
    assert proc.returncode == 0
    read = [(os.path.basename(r["source"]), r["predictions"][0]["label"]) for r in _records(proc.stdout)]
    assert len(read) == 40 and read[:20] == read[20:]


def test_usage_errors_exit_2_with_one_line():
    proc = run("classify", "--model", "no-such-net", "x.png")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "valid:" in proc.stderr
    assert run("classify", "--batch-size", "0", "x.png").returncode == 2
    assert run("no-such-command").returncode == 2


@pytest.fixture(scope="module")
def lenet_weights(tmp_path_factory):
    """A LeNet-5 with fixed random weights: enough to test the pipeline's plumbing, not its accuracy."""
    import torch

    torch.manual_seed(0)
    model = catalog.get("lenet5").build()
    return str(weights.save(tmp_path_factory.mktemp("w") / "lenet.safetensors", model.state_dict(),
                            {"task": "classify", "model": "lenet5"}))


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory):
    """Good digit images with a corrupt file and a text file in between."""
    from cnntool.data.builtin import load_opencv_digits

    images, _ = load_opencv_digits()
    d = tmp_path_factory.mktemp("batch")
    for i in range(6):
        Image.fromarray(images[i * 700]).save(d / f"{i}-good.png")
    (d / "2-corrupt.png").write_bytes((d / "1-good.png").read_bytes()[:40])
    (d / "4-text.jpg").write_text("this is not a jpeg")
    return d


def _records(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


def test_a_bad_file_in_a_batch_gets_an_error_record_and_the_rest_are_done(batch_dir, lenet_weights):
    proc = run("classify", "--model", "lenet5", "--weights", lenet_weights, "--batch-size", "3", str(batch_dir),
               str(batch_dir / "missing.png"))
    assert proc.returncode == 1
    records = _records(proc.stdout)
    names = [os.path.basename(r["source"]) for r in records]
    assert names == sorted(os.listdir(batch_dir)) + ["missing.png"]
    errors = {os.path.basename(r["source"]): r["error"] for r in records if "error" in r}
    assert set(errors) == {"2-corrupt.png", "4-text.jpg", "missing.png"}
    assert all("\n" not in e["message"] for e in errors.values())
    good = [r for r in records if "error" not in r]
    assert len(good) == 6 and all(len(r["predictions"]) == 5 for r in good)
    assert all((r["width"], r["height"]) == (20, 20) for r in good)
    assert "Traceback" not in proc.stderr


def test_workers_keep_input_order_and_give_the_same_results(batch_dir, lenet_weights):
    base = ["classify", "--model", "lenet5", "--weights", lenet_weights, str(batch_dir), "--batch-size", "2"]
    serial = _records(run(*base).stdout)
    parallel = _records(run(*base, "--workers", "2").stdout)
    assert serial == parallel


def test_paths_from_stdin_and_formats(batch_dir, lenet_weights):
    good = sorted(str(p) for p in batch_dir.glob("*-good.png"))
    proc = run("classify", "-m", "lenet5", "-w", lenet_weights, "-", "--format", "csv", "--topk", "1",
               stdin="\n".join(good) + "\n")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines[0] == "source,task,model,width,height,rank,label,index,score,in_domain,domain_score,saved,save_error,error.type,error.message"
    assert len(lines) == 1 + len(good)
    table = run("classify", "-m", "lenet5", "-w", lenet_weights, good[0], "--format", "table")
    assert os.path.basename(good[0]) in table.stdout and table.returncode == 0


def test_save_writes_annotated_images(batch_dir, lenet_weights, tmp_path):
    proc = run("classify", "-m", "lenet5", "-w", lenet_weights, str(batch_dir / "0-good.png"), "--save",
               str(tmp_path / "out"))
    record = _records(proc.stdout)[0]
    saved = Image.open(record["saved"])
    assert saved.width >= 20 and saved.height > 20


def test_an_output_folder_blocked_by_a_file_is_one_line_before_any_work(batch_dir, lenet_weights, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run("classify", "-m", "lenet5", "-w", lenet_weights, str(batch_dir / "0-good.png"), "--save",
               str(blocker / "out"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "--save: cannot write to" in proc.stderr


def test_closed_pipe_ends_quietly(batch_dir, lenet_weights):
    many = " ".join([str(batch_dir / "0-good.png")] * 300)
    proc = subprocess.run(f"set -o pipefail; {sys.executable} -m cnntool classify -m lenet5 -w {lenet_weights} "
                          f"--batch-size 1 {many} | head -1", shell=True, capture_output=True, text=True,
                          executable="/bin/bash", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and proc.stderr == ""


def test_ctrl_c_exits_130_without_traceback(batch_dir, lenet_weights):
    proc = subprocess.Popen([*CNNTOOL, "classify", "-m", "lenet5", "-w", lenet_weights, "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write(str(batch_dir / "0-good.png") + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().startswith("{")  # the model is loaded and working; stdin stays open
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err


def test_bf16_runs_the_same_pipeline_with_the_same_labels(batch_dir, lenet_weights):
    base = ["classify", "-m", "lenet5", "-w", lenet_weights, *sorted(str(p) for p in batch_dir.glob("*-good.png")),
            "--topk", "1", "--format", "jsonl"]
    fp32, bf16 = run(*base), run(*base, "--bf16")
    assert bf16.returncode == 0 and bf16.stderr == "", bf16.stderr
    a, b = _records(fp32.stdout), _records(bf16.stdout)
    assert [r["predictions"][0]["label"] for r in a] == [r["predictions"][0]["label"] for r in b]
    assert all(abs(x["predictions"][0]["score"] - y["predictions"][0]["score"]) < 0.05 for x, y in zip(a, b))
