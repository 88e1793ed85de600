"""The training engine on tiny synthetic data: convergence, outputs and metadata, seed repeatability,
resume after an interruption, the learning-rate schedule, augmentation and checkpoints."""

import signal

import pytest
import torch
from train_helpers import tiny_config, tiny_idx, tiny_task

from cnntool import weights
from cnntool.engine.train import TrainConfig, Trainer, TrainingInterrupted, learning_rate, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_idx(tmp_path_factory.mktemp("tiny"))


def _state(path):
    return weights.load(path)[0]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_training_converges_and_writes_everything(data, tmp_path):
    from cnntool.cli import main
    from cnntool.loader import load_model

    out = tmp_path / "w.safetensors"
    argv = ["train", "classify", "--data", str(data), "--model", "lenet5-relu", "--input-size", "16", "--epochs", "4",
            "--batch-size", "16", "--lr", "0.05", "--val-split", "0.2", "--threads", "1", "--out", str(out),
            "--run-dir", str(tmp_path / "run"), "-q"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    meta = weights.read_metadata(out)
    for key in ("task", "model", "kwargs", "classes", "input", "metrics", "command", "data", "epochs", "seed",
                "created", "cnntool_version", "images_per_second"):
        assert key in meta, key
    assert meta["task"] == "classify" and meta["model"] == "lenet5-relu"
    assert meta["kwargs"]["num_classes"] == 3 and meta["kwargs"]["input_size"] == [16, 16]
    assert meta["input"]["size"] == [16, 16] and meta["classes"] == ["0", "1", "2"]
    assert meta["input"]["foreground"] == "light"  # bright shapes on a dark ground: read off the data
    assert meta["command"].startswith("cnntool train classify --data ") and "--input-size 16" in meta["command"]
    assert "official test split" in meta["metrics"]["heldout_data"]  # t10k- beside the train file
    history = __import__("json").loads((tmp_path / "w.metrics.json").read_text())["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert meta["metrics"]["heldout"]["accuracy"] > 0.8  # chance is 1/3
    assert (tmp_path / "w.curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = load_model("lenet5-relu", str(out), task="classify")  # the prediction side reads it back
    assert loaded.input.size == (16, 16) and loaded.classes == ("0", "1", "2")
    best = load_model(None, str(tmp_path / "run/best.safetensors"), task="classify")  # usable mid-run
    assert best.spec.name == "lenet5-relu" and best.classes == ("0", "1", "2") and best.input.size == (16, 16)


def test_same_seed_same_weights(data, tmp_path):
    a = tiny_config(tmp_path, "a", seed=3)
    b = tiny_config(tmp_path, "b", seed=3)
    train(tiny_task(data, augment=_aug()), a)
    train(tiny_task(data, augment=_aug()), b)
    assert _same(_state(a.out), _state(b.out))
    c = tiny_config(tmp_path, "c", seed=4)
    train(tiny_task(data, augment=_aug()), c)
    assert not _same(_state(a.out), _state(c.out))


def _aug():
    from cnntool.augment import AugmentConfig

    return AugmentConfig(crop_pad=1, rotate=5, erase=0.3)


def test_resume_after_interruption_matches_uninterrupted_run(data, tmp_path):
    whole = tiny_config(tmp_path, "whole", epochs=3, ema=0.9)  # the moving average resumes too
    train(tiny_task(data, augment=_aug()), whole)

    def stop_mid_epoch(trainer, epoch, step):
        if (epoch, step) == (1, 2):
            trainer.request_stop(signal.SIGINT)

    cut = tiny_config(tmp_path, "cut", epochs=3, ema=0.9)
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(tiny_task(data, augment=_aug()), cut, on_step=stop_mid_epoch).run()
    assert info.value.exit_code == 130 and info.value.checkpoint_path.is_file()
    assert not cut.out.exists()
    resumed = tiny_config(tmp_path, "cut", epochs=3, ema=0.9, resume=True)
    train(tiny_task(data, augment=_aug()), resumed)
    assert _same(_state(whole.out), _state(cut.out))


def test_resume_without_checkpoint_is_a_config_error(data, tmp_path):
    from cnntool.errors import ConfigError

    with pytest.raises(ConfigError, match="no checkpoint"):
        train(tiny_task(data), tiny_config(tmp_path, "none", resume=True))


def test_output_folders_are_made_or_refused_before_any_data_is_read(data, tmp_path):
    from cnntool.errors import ConfigError

    class NeverPrepared:
        def prepare(self, seed):
            raise AssertionError("data read before the output folders were checked")

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for cfg in (tiny_config(tmp_path, out=blocker / "w.safetensors"), tiny_config(tmp_path, run_dir=blocker / "run")):
        with pytest.raises(ConfigError, match="cannot write to .*a-file"):
            train(NeverPrepared(), cfg)
    nested = tiny_config(tmp_path, out=tmp_path / "new" / "deeper" / "w.safetensors", epochs=1)
    train(tiny_task(data), nested)
    assert nested.out.exists() and nested.sidecar(".metrics.json").exists()


def test_onecycle_schedule_shape():
    cfg = TrainConfig(out="x.safetensors", lr=0.1, warmup=0.2, schedule="onecycle")
    assert learning_rate(cfg, 0, 100) == pytest.approx(0.004)
    assert learning_rate(cfg, 20, 100) == pytest.approx(0.1)
    assert learning_rate(cfg, 99, 100) < 0.001
    assert learning_rate(TrainConfig(out="x.safetensors", schedule="constant", lr=0.3), 50, 100) == 0.3


def test_crop_pad_and_flip_are_exact_pixel_moves():
    from cnntool.augment import AugmentConfig, warp

    torch.manual_seed(0)
    pixels = torch.arange(2 * 36, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = warp(pixels, AugmentConfig(crop_pad=2))
    for src, dst in zip(pixels, out):  # each image is its own copy shifted by whole pixels, zero-filled
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(torch.roll(src, (dy, dx), (1, 2))[:, max(dy, 0):6 + min(dy, 0), max(dx, 0):6 + min(dx, 0)],
                                dst[:, max(dy, 0):6 + min(dy, 0), max(dx, 0):6 + min(dx, 0)])]
        assert found
    flipped = warp(pixels, AugmentConfig(hflip=True))
    for src, dst in zip(pixels, flipped):
        assert torch.equal(dst, src) or torch.equal(dst, src.flip(2))


def test_checkpoint_round_trip_keeps_adam_state(tmp_path):
    from cnntool.engine import checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    checkpoint.save(tmp_path / "c.safetensors", model.state_dict(), opt, {"epoch": 1, "step": 2})
    state, opt_state, progress, extra = checkpoint.load(tmp_path / "c.safetensors")
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.01)
    fresh.load_state_dict(opt_state)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(fresh.state_dict()["state"][0][key], opt.state_dict()["state"][0][key])
    assert progress == {"epoch": 1, "step": 2} and torch.equal(state["weight"], model.weight)
    assert extra == {}


def test_training_streams_a_folder_tree_through_the_dataloader(tmp_path):
    from PIL import Image
    from train_helpers import shapes

    images, labels = shapes(30, seed=2)
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "tree" / ["bar", "column", "square"][label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).resize((24, 24)).save(folder / f"{i}.png")
    meta = train(tiny_task(tmp_path / "tree", augment=_aug()), tiny_config(tmp_path, "tree", epochs=1))
    assert meta["classes"] == ["bar", "column", "square"]
    # no test/ folder: the figure is the validation split's, and named so
    assert meta["metrics"]["heldout_kind"] == "validation" and "validation split" in meta["metrics"]["heldout_data"]
    assert meta["metrics"]["heldout"]["images"] == 6


def test_elastic_field_moves_pixels_by_at_most_the_bound():
    from cnntool.augment import _elastic_field

    torch.manual_seed(0)
    field = _elastic_field(4, 32, 32, 3.0, "cpu")  # grid units: 2/32 per pixel
    pixels = field.abs() * 16
    assert field.shape == (4, 32, 32, 2)
    assert torch.allclose(pixels.amax(dim=(1, 2, 3)), torch.full((4,), 3.0))


def test_bf16_autocast_and_channels_last_train(data, tmp_path):
    meta = train(tiny_task(data), tiny_config(tmp_path, "fast", epochs=1, bf16=True, channels_last=True))
    assert meta["train"]["bf16"] and meta["train"]["channels_last"]
    state = _state(tmp_path / "fast.safetensors")
    assert all(v.dtype == torch.float32 for k, v in state.items() if v.is_floating_point())


def test_the_distillation_loss_is_hintons_mix_of_labels_and_softened_teacher(data):
    task = tiny_task(data, distill=0.7, temperature=3.0, label_smoothing=0.1)
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    labels = torch.arange(8) % 3
    soft = (teacher / 3.0).softmax(1)
    log_student = (student / 3.0).log_softmax(1)
    kl = (soft * (soft.log() - log_student)).sum(1).mean()
    expected = 0.3 * torch.nn.functional.cross_entropy(student, labels, label_smoothing=0.1) + 0.7 * 9.0 * kl
    torch.testing.assert_close(task.loss(student, (labels, soft)), expected)
    torch.testing.assert_close(task.loss(student, labels),
                               torch.nn.functional.cross_entropy(student, labels, label_smoothing=0.1))


def test_a_student_learns_from_a_teacher_and_records_it(data, tmp_path):
    from cnntool.errors import ConfigError

    teacher = tiny_config(tmp_path, "teacher", epochs=10, lr=0.1)  # confident: a weak teacher's targets are flat
    train(tiny_task(data), teacher)
    meta = train(tiny_task(data, teacher=str(teacher.out), distill=0.5, temperature=2.0),
                 tiny_config(tmp_path, "student", epochs=6))
    assert meta["distilled_from"] == {"teacher": str(teacher.out), "weight": 0.5, "temperature": 2.0}
    assert meta["metrics"]["heldout"]["accuracy"] > 0.8  # chance is 1/3
    with pytest.raises(ConfigError, match="student's batches"):
        tiny_task(data, input_size=(20, 20), teacher=str(teacher.out)).prepare(0)


def test_the_teacher_reads_the_student_batch_in_its_own_normalization(data, tmp_path):
    from cnntool.loader import load_model
    from cnntool.preprocess import Preprocessor

    teacher = tiny_config(tmp_path, "teacher", epochs=1)
    train(tiny_task(data, mean=(0.3,), std=(0.2,)), teacher)
    student = tiny_task(data, teacher=str(teacher.out), temperature=2.0)
    student.prepare(0)
    pixels = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    _, (_, soft) = student.train_batch(pixels, torch.zeros(5, dtype=torch.int64))
    reference = load_model(None, str(teacher.out), task="classify")
    assert reference.input.mean == (0.3,) and student.input.mean != (0.3,)
    with torch.no_grad():
        expected = (reference.module(Preprocessor(reference.input).normalize(pixels.float())) / 2.0).softmax(1)
    torch.testing.assert_close(soft, expected)


def test_init_starts_from_a_trained_file_and_records_where_it_came_from(data, tmp_path):
    from cnntool.errors import ConfigError

    parent = tiny_config(tmp_path, "parent", epochs=6)
    train(tiny_task(data), parent)
    # lr 0: the fine-tuned file must hold exactly the tensors it started from
    child = tiny_config(tmp_path, "child", epochs=1, lr=0.0, schedule="constant", init=str(parent.out))
    meta = train(tiny_task(data), child)
    assert _same(_state(parent.out), _state(child.out))
    parent_meta = weights.read_metadata(parent.out)
    assert meta["init"]["file"] == "parent.safetensors" and meta["init"]["left_fresh"] == []
    assert meta["init"]["sha256"] == __import__("hashlib").sha256(parent.out.read_bytes()).hexdigest()
    assert meta["init"]["model"] == "lenet5-relu"
    assert meta["metrics"]["heldout"]["accuracy"] == parent_meta["metrics"]["heldout"]["accuracy"]
    grandchild = train(tiny_task(data), tiny_config(tmp_path, "grandchild", epochs=1, init=str(child.out)))
    assert grandchild["init"]["file"] == "child.safetensors" and grandchild["init"]["init"] == meta["init"]
    with pytest.raises(ConfigError, match=r"holds lenet5-relu .*no tensor fits"):  # says what the file is
        train(tiny_task(data, model="resnet-small"), tiny_config(tmp_path, "other", init=str(parent.out)))


def test_transfer_keeps_a_fresh_head_for_another_class_count_and_refuses_another_architecture():
    from cnntool.models import catalog
    from cnntool.errors import ConfigError

    torch.manual_seed(0)
    ten = catalog.get("lenet5-relu", task="classify").build(num_classes=10).state_dict()
    three = catalog.get("lenet5-relu", task="classify").build(num_classes=3)
    head_before = {k: v.clone() for k, v in three.state_dict().items() if tuple(v.shape) != tuple(ten[k].shape)}
    fresh = weights.transfer(three, ten, source="test")
    assert sorted(fresh) == sorted(head_before) and len(fresh) == 2  # the output layer's weight and bias
    for k, v in three.state_dict().items():
        assert torch.equal(v, head_before[k] if k in head_before else ten[k]), k
    resnet = catalog.get("resnet-small", task="classify").build(num_classes=10).state_dict()
    with pytest.raises(ConfigError, match="no tensor fits"):
        weights.transfer(three, resnet, source="test")


def test_the_weight_average_follows_its_formula_and_copies_counters():
    from cnntool.engine.train import _Ema

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = _Ema(model)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():  # in place, as the optimizer and BatchNorm update
        for p in model.parameters():
            p.add_(1.0)
        model[1].num_batches_tracked.add_(5)
    ema.update(0.999, step=100)
    d = 101 / 110  # the ramp, below 0.999 at step 100
    for k, v in ema.module.state_dict().items():
        current = model.state_dict()[k]
        expected = current if k.endswith("num_batches_tracked") else d * before[k] + (1 - d) * current
        assert torch.allclose(v, expected), k
